"""The auditor records SendGrid events and call statuses forward-only, like SMS statuses, and
keeps what recipients texted (opt-outs) once, with the sender masked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import pytest_asyncio

from auditor import handlers, schema
from auditor.adapters.trail import PostgresTrail, outcome_counter
from auditor.personal import PersonalData
from common import db
from common.contracts import EmailEvent, InboundSms, TwilioStatus
from common.crypto import generate_key
from common.metrics import make_registry

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def trail(private_database_url: str) -> AsyncIterator[tuple[PostgresTrail, asyncpg.Pool]]:
    async with db.pool(private_database_url, max_size=2) as pool:
        data = PersonalData(generate_key())
        await schema.migrate(pool, data)
        yield PostgresTrail(pool, data=data, outcomes=outcome_counter(make_registry())), pool


def email_event(event: str, n: int, **extra: object) -> EmailEvent:
    raw = {"email": "finance@example.com", "event": event, "sg_event_id": f"ev-{n}",
           "sg_message_id": "Xmsg123.filter-1", "ip": "192.0.2.1", **extra}  # fmt: skip
    return EmailEvent(
        event=event,
        sg_event_id=f"ev-{n}",
        sg_message_id="Xmsg123.filter-1",
        email="finance@example.com",
        received_at=datetime.now(UTC),
        raw=raw,
    )


async def test_email_events_move_the_mails_status_forward_only_and_drop_personal_fields(trail):
    store, pool = trail
    for n, event in enumerate(["processed", "open", "delivered", "deferred"]):
        await handlers.record_email_event(email_event(event, n), trail=store)
    row = await pool.fetchrow("SELECT status FROM audit.statuses WHERE provider_id = 'Xmsg123'")
    assert row["status"] == "open"  # delivered and deferred came late: history only
    raws = await pool.fetch("SELECT raw FROM audit.status_events WHERE provider_id = 'Xmsg123'")
    assert len(raws) == 4
    assert all("email" not in r["raw"] and "ip" not in r["raw"] for r in raws)


async def test_a_bounce_without_a_message_id_is_not_joined_to_anything(trail):
    store, pool = trail
    event = email_event("bounce", 9).model_copy(update={"sg_message_id": None})
    await handlers.record_email_event(event, trail=store)
    assert await pool.fetchval("SELECT count(*) FROM audit.status_events") == 0


async def test_call_statuses_end_at_their_outcome_whatever_the_arrival_order(trail):
    store, pool = trail
    for status in ("completed", "ringing", "in-progress", "initiated"):
        await handlers.record_status(
            TwilioStatus(
                resource="call",
                provider_id="CA" + "1" * 32,
                status=status,
                raw={},
                received_at=datetime.now(UTC),
            ),
            trail=store,
        )
    status = await pool.fetchval("SELECT status FROM audit.statuses")
    assert status == "completed"


async def test_an_inbound_stop_is_kept_once_with_the_sender_masked(trail):
    store, pool = trail
    stop = InboundSms(
        message_sid="SM" + "2" * 32,
        from_number="+31612345678",
        to_number="+3197010000000",
        kind="stop",
        keyword="STOP",
        received_at=datetime.now(UTC),
    )
    await handlers.record_inbound(stop, trail=store)
    await handlers.record_inbound(stop, trail=store)  # Twilio retried the webhook
    rows = await pool.fetch("SELECT sender, kind, keyword FROM audit.inbound")
    assert len(rows) == 1
    assert rows[0]["kind"] == "stop"
    assert "12345678" not in rows[0]["sender"]
