"""One company cannot touch another's trail: a status signed with one connection's own account
is applied only to that connection's messages (refused, counted and logged otherwise, even
when it overtook the send); a status from the install's shared account applies to any; and the
trail is read only with a token (401 without one, 403 with a wrong one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
import pytest_asyncio
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from auditor import api, handlers, schema
from auditor import cli as audit_cli
from auditor.adapters.trail import PostgresTrail, security_counter, status_counter
from auditor.personal import PersonalData
from common import db
from common.contracts import (
    EmailEvent,
    NotificationSent,
    Recipient,
    SendNotification,
    SourceDocument,
    TwilioStatus,
)
from common.crypto import generate_key
from common.metrics import make_registry
from common.testing import eventually
from common.testing.stack import free_port

pytestmark = pytest.mark.integration

Stack = Any  # conftest.Stack

ACME, GLOBEX = "acme", "globex"
MOBILE = "+31612345678"
ADMIN, READER = "admin-token-for-tests", "read-token-for-tests"
SECURITY = "mlc_security_events_total"


@dataclass
class Trail:
    store: PostgresTrail
    pool: asyncpg.Pool
    registry: CollectorRegistry

    def refused(self) -> float:
        return self.registry.get_sample_value(SECURITY, {"kind": "cross_tenant_status"}) or 0.0

    async def statuses(self, provider_id: str) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT status FROM audit.status_events WHERE provider_id = $1 ORDER BY id",
            provider_id,
        )
        return [r["status"] for r in rows]

    async def current(self, provider_id: str) -> str | None:
        return await self.pool.fetchval(
            "SELECT status FROM audit.statuses WHERE provider_id = $1", provider_id
        )


@pytest_asyncio.fixture
async def trail(private_database_url: str) -> AsyncIterator[Trail]:
    async with db.pool(private_database_url, max_size=3) as pool:
        data = PersonalData(generate_key())
        await schema.migrate(pool, data)
        registry = make_registry()
        store = PostgresTrail(
            pool,
            data=data,
            statuses=status_counter(registry),
            security=security_counter(registry),
        )
        yield Trail(store, pool, registry)


def command(connection_id: str, *, number: str = "F1") -> SendNotification:
    return SendNotification(
        notification_id=uuid4(),
        idempotency_key=uuid4().hex,
        channel="sms",
        recipient=Recipient(address=MOBILE),
        template="sms_invoice_issued",
        content=f"Invoice {number}: 121.00 due",
        source=SourceDocument(
            connection_id=connection_id,
            division=1,
            entity="SalesInvoices",
            id=uuid4(),
            number=number,
        ),
        fact="invoice_issued",
    )


def sent(c: SendNotification, sid: str) -> NotificationSent:
    return NotificationSent(
        notification_id=c.notification_id, attempt=1, channel="sms", provider_id=sid
    )


def status(sid: str, value: str, connection_id: str | None) -> TwilioStatus:
    """A status callback as ingress publishes it: ``connection_id`` from the callback URL's
    ``?connection=`` (None: the install's shared account)."""
    return TwilioStatus(
        provider_id=sid,
        status=value,
        raw={"MessageSid": sid, "MessageStatus": value, "To": MOBILE},
        received_at=datetime.now(UTC),
        connection_id=connection_id,
    )


async def sent_for(trail: Trail, connection_id: str) -> str:
    """A notification of ``connection_id`` sent with a fresh message SID; the SID."""
    c, sid = command(connection_id), "SM" + uuid4().hex
    await handlers.record_requested(c, trail=trail.store)
    await handlers.record_outcome(sent(c, sid), trail=trail.store)
    return sid


# --- cross-tenant statuses ---------------------------------------------------------------------


async def test_a_status_signed_for_another_connection_is_refused_counted_logged_and_not_kept(
    trail: Trail,
):
    sid = await sent_for(trail, ACME)
    with structlog.testing.capture_logs() as logs:
        applied = await trail.store.status(status(sid, "delivered", GLOBEX))

    assert applied is False
    assert await trail.statuses(sid) == []
    assert await trail.current(sid) is None
    assert trail.refused() == 1
    (event,) = [e for e in logs if e["event"] == "security_event"]
    assert event["log_level"] == "warning"
    assert (event["kind"], event["signed_for"], event["notification_connection"]) == (
        "cross_tenant_status",
        GLOBEX,
        ACME,
    )
    assert MOBILE not in repr(event)


async def test_a_status_from_the_install_account_applies_to_any_connections_message(
    trail: Trail,
):
    sid = await sent_for(trail, ACME)
    await handlers.record_status(status(sid, "delivered", None), trail=trail.store)
    assert await trail.current(sid) == "delivered"
    assert trail.refused() == 0


async def test_a_status_signed_for_the_messages_own_connection_applies(trail: Trail):
    sid = await sent_for(trail, ACME)
    await handlers.record_status(status(sid, "sent", ACME), trail=trail.store)
    await handlers.record_status(status(sid, "delivered", ACME), trail=trail.store)
    assert await trail.statuses(sid) == ["sent", "delivered"]
    assert await trail.current(sid) == "delivered"
    assert trail.refused() == 0


@pytest.mark.parametrize("order", [("requested", "sent"), ("sent", "requested")])
async def test_a_forged_status_that_overtook_the_send_is_dropped_once_its_connection_is_known(
    trail: Trail, order: tuple[str, str]
):
    c, sid = command(ACME), "SM" + uuid4().hex
    # the genuine callback (install account) and a forged one, both before notification.sent
    await handlers.record_status(status(sid, "sent", None), trail=trail.store)
    await handlers.record_status(status(sid, "delivered", GLOBEX), trail=trail.store)
    assert await trail.current(sid) == "delivered"  # kept while nobody knows the message
    for step in order:  # the send command and its outcome, in either arrival order
        if step == "requested":
            await handlers.record_requested(c, trail=trail.store)
        else:
            await handlers.record_outcome(sent(c, sid), trail=trail.store)

    assert await trail.statuses(sid) == ["sent"]
    assert await trail.current(sid) == "sent"  # rebuilt from what is left
    assert trail.refused() == 1
    (item,) = await trail.store.document_trail(document_id=c.source.id)
    assert item["delivery_status"] == "sent"


async def test_an_email_event_signed_for_another_connection_is_refused(trail: Trail):
    sid = await sent_for(trail, ACME)
    event = EmailEvent(
        connection_id=GLOBEX,
        event="delivered",
        sg_event_id="ev-1",
        sg_message_id=f"{sid}.filter-1",
        received_at=datetime.now(UTC),
        raw={"event": "delivered", "email": "finance@example.com"},
    )
    await handlers.record_email_event(event, trail=trail.store)
    assert await trail.statuses(sid) == []
    assert trail.refused() == 1


async def test_a_cross_tenant_status_through_the_broker_is_refused_and_counted(stack: Stack):
    to = "+31622229901"
    c = stack.command(to, number="F990")  # connection "default"
    await stack.send(c)
    entry = await eventually(
        lambda: stack.notification(c.notification_id),
        until=lambda n: n["state"] == "sent",
        what="sent",
    )
    sid = entry["provider_id"]
    await stack.publisher.publish(status(sid, "undelivered", GLOBEX))
    await stack.publisher.publish(status(sid, "delivered", None))
    await eventually(
        lambda: stack.notification(c.notification_id),
        until=lambda n: n["delivery_status"] == "delivered",
        what="the install account's status applied",
    )
    await eventually(
        lambda: stack.registry.get_sample_value(SECURITY, {"kind": "cross_tenant_status"}),
        until=lambda n: n == 1,
        what="the forged status counted",
    )
    history = (await stack.notification(c.notification_id))["status_history"]
    assert [e["status"] for e in history] == ["delivered"]


# --- /trail wants a token --------------------------------------------------------------------


@pytest_asyncio.fixture
async def api_url(trail: Trail) -> AsyncIterator[str]:
    """The auditor's API over ``trail``, with an admin and a read-only token."""
    app = web.Application()
    app[api.TRAIL] = trail.store
    app[api.ADMIN_TOKEN] = SecretStr(ADMIN)
    app[api.READ_TOKEN] = SecretStr(READER)
    api.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("headers", "answer"),
    [
        ({}, 401),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer nope"}, 403),
        ({"Authorization": f"Bearer {READER}"}, 200),
        ({"Authorization": f"Bearer {ADMIN}"}, 200),
    ],
)
async def test_the_trail_answers_401_without_a_token_403_with_a_wrong_one_200_with_either(
    api_url: str, headers: dict[str, str], answer: int
):
    async with httpx.AsyncClient(base_url=api_url) as http:
        response = await http.get("/trail?number=F1", headers=headers)
    assert response.status_code == answer
    if answer == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_the_read_token_opens_the_trail_and_no_admin_route(api_url: str):
    reader = {"Authorization": f"Bearer {READER}"}
    async with httpx.AsyncClient(base_url=api_url) as http:
        assert (
            await http.get("/admin/trail?number=F1&reveal=1", headers=reader)
        ).status_code == 403
        assert (await http.get("/admin/failed", headers=reader)).status_code == 403
        purge = await http.post("/admin/purge", json={"older_than_days": 1}, headers=reader)
        assert purge.status_code == 403


async def test_without_any_token_configured_every_route_is_closed(trail: Trail):
    app = web.Application()
    app[api.TRAIL] = trail.store
    app[api.ADMIN_TOKEN] = None
    api.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await http.get("/trail?number=F1")).status_code == 403
            anything = {"Authorization": "Bearer anything"}
            assert (await http.get("/trail?number=F1", headers=anything)).status_code == 403
    finally:
        await runner.cleanup()


async def test_mlc_audit_show_sends_the_token_and_says_what_to_set_without_one(
    trail: Trail, api_url: str
):
    c = command(ACME, number="F4242")
    await handlers.record_requested(c, trail=trail.store)
    parser = audit_cli.argparse.ArgumentParser()
    audit_cli.add_audit_arguments(parser)
    said: list[str] = []
    with_token = audit_cli.CliSettings(auditor_url=api_url, auditor_read_token=READER)
    code = await asyncio.to_thread(
        audit_cli.run_audit, parser.parse_args(["show", "F4242"]), said.append, with_token
    )
    assert code == 0
    assert "F4242" in said[0]
    assert MOBILE not in said[0]
    without = audit_cli.CliSettings(auditor_url=api_url)
    with pytest.raises(SystemExit, match="MLC_AUDITOR_READ_TOKEN or MLC_AUDITOR_ADMIN_TOKEN"):
        await asyncio.to_thread(
            audit_cli.run_audit, parser.parse_args(["show", "F4242"]), said.append, without
        )
