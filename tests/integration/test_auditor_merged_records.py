"""Records of concurrent deliveries, merged into one ``audit.record_many`` call per batch, leave
the trail exactly as the same records applied one by one: states, attempts, status history,
current statuses, refused cross-tenant statuses and the counters alike."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from auditor import handlers, schema
from auditor.adapters.trail import (
    PostgresTrail,
    outcome_counter,
    security_counter,
    status_counter,
)
from auditor.personal import PersonalData
from common import db
from common.contracts import (
    NotificationFailed,
    NotificationSent,
    Recipient,
    SendNotification,
    SourceDocument,
    TwilioStatus,
    TwilioStatuses,
)
from common.crypto import generate_key
from common.groupcommit import GroupCommit
from common.metrics import make_registry

pytestmark = pytest.mark.integration

MOBILE = "+31612345678"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

Record = Callable[[PostgresTrail], Awaitable[Any]]


def _command(connection_id: str, n: int) -> SendNotification:
    return SendNotification(
        notification_id=uuid4(),
        idempotency_key=uuid4().hex,
        channel="sms",
        recipient=Recipient(address=MOBILE),
        template="sms_invoice_issued",
        content=f"Invoice F{n}: 121.00 due",
        source=SourceDocument(
            connection_id=connection_id, division=1, entity="SalesInvoices", id=uuid4(),
            number=f"F{n}",
        ),
        fact="invoice_issued",
    )  # fmt: skip


def _status(sid: str, value: str, connection_id: str | None, n: int) -> TwilioStatus:
    return TwilioStatus(
        provider_id=sid,
        status=value,
        error_code="30003" if value == "undelivered" else None,
        raw={"MessageSid": sid, "MessageStatus": value, "To": MOBILE},
        received_at=T0 + timedelta(seconds=n),
        connection_id=connection_id,
    )


def _recorded(status: TwilioStatus) -> Record:
    return lambda trail: handlers.record_status(status, trail=trail)


def _scenario() -> list[Record]:
    """Forty notifications' records in arrival order, with what the trail must sort out:
    repeats, statuses that overtake the send, a late status, a failure, and statuses signed
    for another company before and after the message is known."""
    records: list[Record] = []
    for n in range(40):
        owner = "acme" if n % 2 else "globex"
        c, sid = _command(owner, n), f"SM{n:032d}"
        sent = NotificationSent(
            notification_id=c.notification_id, attempt=1, channel="sms", provider_id=sid
        )
        steps: list[Record] = [lambda t, c=c: handlers.record_requested(c, trail=t)]
        if n % 5 == 0:  # a status overtakes notification.sent
            steps.insert(0, _recorded(_status(sid, "sent", owner, n)))
        if n % 7 == 0:  # a status signed for the other company, before the send is known
            other = "acme" if owner == "globex" else "globex"
            steps.insert(0, _recorded(_status(sid, "delivered", other, n)))
        if n % 9 == 0:
            failed = NotificationFailed(
                notification_id=c.notification_id, attempt=1, channel="sms",
                error_class="permanent", error_code="21211", error=f"bad To {MOBILE}",
                reason="invalid_address",
            )  # fmt: skip
            steps.append(lambda t, e=failed: handlers.record_outcome(e, trail=t))
        else:
            steps += [
                lambda t, e=sent: handlers.record_outcome(e, trail=t),
                lambda t, e=sent: handlers.record_outcome(e, trail=t),  # redelivered
                _recorded(_status(sid, "sent", owner, n + 1)),
                _recorded(_status(sid, "delivered", None, n + 2)),
                _recorded(_status(sid, "sent", owner, n + 3)),  # late, repeated
            ]
        if n % 11 == 0:  # signed for the other company after the send is known
            steps.append(_recorded(_status(sid, "undelivered", "mallory", n + 4)))
        records += steps
    return records


async def _snapshot(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    queries = {
        "notifications": """SELECT notification_id, state, state_rank, provider_id, channel,
                last_attempt, failure_reason, error_code, recipient_masked
            FROM audit.notifications ORDER BY notification_id""",
        "attempts": """SELECT message_id, notification_id, outcome, attempt, provider_id,
                error_class, error_code, error FROM audit.attempts ORDER BY message_id""",
        "status_events": """SELECT provider_id, status, error_code, repeats, connection_id, raw
            FROM audit.status_events ORDER BY provider_id, status""",
        "statuses": """SELECT provider_id, status, rank, error_code FROM audit.statuses
            ORDER BY provider_id""",
    }
    return {
        name: [tuple(r.values()) for r in await pool.fetch(query)]
        for name, query in queries.items()
    }


async def _apply(pool: asyncpg.Pool, data: PersonalData, records: list[Record], *, merged: bool):
    await pool.execute(
        "TRUNCATE audit.notifications, audit.attempts, audit.status_events, audit.statuses"
    )
    registry = make_registry()
    group = GroupCommit(pool, max_batch=100) if merged else None
    trail = PostgresTrail(
        pool,
        data=data,
        outcomes=outcome_counter(registry),
        statuses=status_counter(registry),
        security=security_counter(registry),
        group=group,
    )
    if merged:
        await asyncio.gather(*(record(trail) for record in records))
    else:
        for record in records:
            await record(trail)
    counters = {
        (m.name, tuple(sorted(s.labels.items()))): s.value
        for m in registry.collect()
        if m.name.startswith("mlc_")
        for s in m.samples
        if s.name.endswith("_total")
    }
    return await _snapshot(pool), counters, group


async def test_merged_records_leave_the_same_trail_and_counts_as_records_applied_one_by_one(
    private_database_url: str,
) -> None:
    records = _scenario()
    async with db.pool(private_database_url, max_size=2) as pool:
        data = PersonalData(generate_key())
        await schema.migrate(pool, data)
        one_by_one, counted_alone, _ = await _apply(pool, data, records, merged=False)
        merged, counted_merged, group = await _apply(pool, data, records, merged=True)

    assert group is not None
    assert group.units == len(records)
    assert group.batches <= 5, f"{group.batches} transactions for {len(records)} records"
    for table, rows in one_by_one.items():
        assert merged[table] == rows, table
    assert counted_merged == counted_alone
    # the scenario has something to compare: refusals, failures and final statuses happened
    refused = counted_alone[("mlc_security_events", (("kind", "cross_tenant_status"),))]
    # Signed for the other company before the send was known: n in 0, 7, ... 35, dropped when
    # the sent outcome links the message, except n = 0, which failed (no message to link).
    # After: n in 11, 22, 33 (n = 0 again failed: nothing to compare the signature with).
    assert refused == 5 + 3
    states = {row[1] for row in one_by_one["notifications"]}
    assert states == {"sent", "failed"}
    assert {row[1] for row in one_by_one["statuses"]} >= {"delivered"}


async def test_statuses_published_together_are_recorded_as_each_alone_in_one_transaction(
    private_database_url: str,
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        data = PersonalData(generate_key())
        await schema.migrate(pool, data)
        group = GroupCommit(pool, max_batch=100)
        registry = make_registry()
        trail = PostgresTrail(
            pool, data=data, statuses=status_counter(registry), security=security_counter(registry),
            group=group,
        )  # fmt: skip
        commands = [_command("acme", n) for n in range(10)]
        for n, c in enumerate(commands):
            await handlers.record_requested(c, trail=trail)
            sent = NotificationSent(
                notification_id=c.notification_id, attempt=1, channel="sms",
                provider_id=f"SM{n:032d}",
            )  # fmt: skip
            await handlers.record_outcome(sent, trail=trail)
        batch = TwilioStatuses(
            statuses=[_status(f"SM{n:032d}", "delivered", "acme", n) for n in range(9)]
            + [_status(f"SM{9:032d}", "delivered", "mallory", 9)]  # another company's
        )
        batches_before = group.batches
        model, handler = handlers.routes(trail=trail, client_id="c")["twilio.statuses."]
        await handler(model.model_validate_json(batch.model_dump_json()))

        assert group.batches - batches_before == 1  # ten statuses, one transaction
        current = dict(
            await pool.fetch("SELECT provider_id, status FROM audit.statuses")  # type: ignore[arg-type]
        )
        assert current == {f"SM{n:032d}": "delivered" for n in range(9)}
        delivered = {"channel": "sms", "status": "delivered"}
        assert registry.get_sample_value("mlc_notification_statuses_total", delivered) == 9
        refused = {"kind": "cross_tenant_status"}
        assert registry.get_sample_value("mlc_security_events_total", refused) == 1


async def test_an_outcome_before_its_command_starts_the_row_and_an_older_one_does_not_move_it(
    private_database_url: str,
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        data = PersonalData(generate_key())
        await schema.migrate(pool, data)
        registry = make_registry()
        trail = PostgresTrail(
            pool, data=data, outcomes=outcome_counter(registry),
            statuses=status_counter(registry), security=security_counter(registry),
        )  # fmt: skip
        command = _command("acme", 1)
        nid = command.notification_id
        second = NotificationSent(
            notification_id=nid, attempt=2, channel="sms", provider_id="SM" + "2" * 32
        )
        first = NotificationFailed(
            notification_id=nid, attempt=1, channel="sms", error_class="transient",
            error_code="20429", error="too many requests", reason="provider_error",
        )  # fmt: skip
        await handlers.record_outcome(second, trail=trail)
        started = await pool.fetchrow("SELECT * FROM audit.notifications")
        await handlers.record_outcome(first, trail=trail)
        await handlers.record_requested(command, trail=trail)
        row = await pool.fetchrow("SELECT * FROM audit.notifications")

    fields = ("state", "last_attempt", "provider_id", "channel", "failure_reason", "error_code")
    assert tuple(started[f] for f in fields) == ("sent", 2, "SM" + "2" * 32, "sms", None, None)
    assert tuple(row[f] for f in fields) == tuple(started[f] for f in fields)
    assert row["document_number"] == "F1"  # the command still filled in what it knows
    attempts = await _count_attempts(private_database_url)
    assert attempts == 2  # both outcomes are in the history, whatever the state says


async def _count_attempts(url: str) -> int:
    async with db.pool(url, max_size=1) as pool:
        return int(await pool.fetchval("SELECT count(*) FROM audit.attempts"))
