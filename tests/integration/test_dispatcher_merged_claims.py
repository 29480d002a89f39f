"""Claims and settles of concurrent deliveries, merged into one ``dispatch.claim_many`` call per
batch, decide exactly as the same calls made one by one: who may send, what a held claim
answers (in flight, sent, failed, deferred), and what the claims table and the outbox keep."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from common import db
from common.contracts import (
    NotificationDeferred,
    NotificationFailed,
    NotificationSent,
    Recipient,
    SendNotification,
    SourceDocument,
)
from common.groupcommit import GroupCommit
from dispatcher.adapters.claims import PostgresClaimStore

pytestmark = pytest.mark.integration

Call = Callable[[PostgresClaimStore], Awaitable[Any]]


def _command(n: int) -> SendNotification:
    return SendNotification(
        notification_id=uuid4(),
        idempotency_key=f"key-{n:03d}",
        channel="sms",
        recipient=Recipient(address=f"+316123400{n:02d}"),
        template="sms_invoice_issued",
        content=f"Invoice F{n}: 121.00 due",
        source=SourceDocument(
            connection_id="acme", division=1, entity="SalesInvoices", id=uuid4(), number=f"F{n}"
        ),
        fact="invoice_issued",
    )


def _scenario() -> list[Call]:
    """Thirty commands claimed, a copy of each claimed again while held, every fifth settled
    in each way there is, and all of them claimed once more."""
    calls: list[Call] = []
    commands = [_command(n) for n in range(30)]
    for c in commands:
        calls.append(lambda s, c=c: s.claim(c))
        calls.append(lambda s, c=c: s.claim(c))  # a copy while the first holds it
    future = datetime.now(UTC) + timedelta(hours=1)
    for n, c in enumerate(commands):
        nid, key = c.notification_id, c.idempotency_key
        if n % 5 == 0:
            sent = NotificationSent(
                notification_id=nid, attempt=1, channel="sms", provider_id=f"SM{n:032d}"
            )
            calls.append(lambda s, k=key, e=sent: s.settle(k, "sent", e, provider_id=e.provider_id))
        elif n % 5 == 1:
            failed = NotificationFailed(
                notification_id=nid, attempt=1, channel="sms", error_class="permanent",
                error_code="21211", reason="invalid_number",
            )  # fmt: skip
            calls.append(
                lambda s, k=key, e=failed: s.settle(
                    k, "failed", e, error_code="21211", reason="invalid_number"
                )
            )
        elif n % 5 in (2, 3):
            retry_at = future if n % 5 == 3 else None
            deferred = NotificationDeferred(
                notification_id=nid, attempt=1, channel="sms", error_class="transient",
                retry_at=retry_at,
            )  # fmt: skip
            calls.append(
                lambda s, k=key, e=deferred, r=retry_at: s.settle(
                    k, "released", e, error_code="20429", retry_at=r, correlation_id=k
                )
            )
        # n % 5 == 4: still sending
    calls += [lambda s, c=c: s.claim(c) for c in commands]
    return calls


async def _tables(pool: asyncpg.Pool) -> dict[str, list[tuple[Any, ...]]]:
    claims = await pool.fetch(
        """SELECT idempotency_key, state, attempts, provider_id, error_code, reason,
                  retry_at IS NOT NULL AS waits, command #>> '{recipient,address}' AS address
           FROM dispatch.claims ORDER BY idempotency_key"""
    )
    outbox = await pool.fetch(
        """SELECT message_type, body->>'notification_id', correlation_id
           FROM dispatch.outbox ORDER BY body->>'notification_id', message_type"""
    )
    return {"claims": [tuple(r.values()) for r in claims], "outbox": [tuple(r) for r in outbox]}


def _comparable(result: Any) -> Any:
    """A claim's answer; a deferral's wait rounded (the clock moved between the two runs)."""
    if result is None:
        return None
    wait = None if result.retry_after is None else round(result.retry_after / 60)
    return (result.outcome, result.attempts, result.provider_id, result.budget_used, wait)


async def _apply(
    pool: asyncpg.Pool, calls: list[Call], *, merged: bool, setup: Sequence[Call] = ()
) -> Any:
    await pool.execute("TRUNCATE dispatch.claims, dispatch.outbox")
    for call in setup:  # one by one in both runs: the state the calls meet
        await call(PostgresClaimStore(pool, stale_seconds=60))
    group = GroupCommit(pool, max_batch=200) if merged else None
    store = PostgresClaimStore(pool, stale_seconds=60, group=group)
    if merged:
        results = await asyncio.gather(*(call(store) for call in calls))
    else:
        results = [await call(store) for call in calls]
    return [_comparable(r) for r in results], await _tables(pool), group


async def test_merged_claims_and_settles_decide_and_keep_what_one_by_one_calls_do(
    private_database_url: str,
) -> None:
    calls = _scenario()
    async with db.pool(private_database_url, max_size=2) as pool:
        await db.migrate(pool, "dispatch", "dispatcher")
        alone, alone_tables, _ = await _apply(pool, calls, merged=False)
        merged, merged_tables, group = await _apply(pool, calls, merged=True)

    assert group is not None
    assert group.units == len(calls)
    assert group.batches <= 3, f"{group.batches} transactions for {len(calls)} calls"
    assert merged == alone
    assert merged_tables == alone_tables
    # the scenario has something to compare: every kind of answer came up
    first, copies, again = alone[0:60:2], alone[1:60:2], alone[-30:]
    assert {r[0] for r in first} == {"claimed"}
    assert {r[0] for r in copies} == {"in_flight"}
    assert [r[0] for r in again[:5]] == ["sent", "failed", "claimed", "deferred", "in_flight"]
    assert again[2][1] == 2  # a released claim is taken again: its second attempt
    assert again[3][4] == 60  # deferred until the provider's retry time, about an hour


def _every_key_once() -> tuple[list[Call], list[Call]]:
    """Thirty claims held in every state there is (the first scenario before its last round)
    and five more sending, then a batch naming each key once: the thirty claimed again,
    twenty new keys claimed, the five settled. (A batch naming a key twice goes item by item,
    as the first test shows.)"""
    commands = [_command(n) for n in range(60)]
    setup = _scenario()[:-30]
    setup += [lambda s, c=c: s.claim(c) for c in commands[40:45]]
    batch: list[Call] = [lambda s, c=c: s.claim(c) for c in commands[:40]]
    batch += [lambda s, c=c: s.claim(c) for c in commands[45:55]]
    for n, c in enumerate(commands[40:45]):
        event = NotificationSent(
            notification_id=c.notification_id, attempt=1, channel="sms", provider_id=f"SMb{n}"
        )
        batch.append(
            lambda s, k=c.idempotency_key, e=event: s.settle(
                k, "sent", e, provider_id=e.provider_id
            )
        )
    return setup, batch


async def test_a_batch_naming_each_key_once_decides_and_keeps_what_one_by_one_calls_do(
    private_database_url: str,
) -> None:
    """Such a batch is applied a statement per step for all its items (migration 006), not
    item by item: its answers, claims and outbox must still be those of calls one by one."""
    setup, batch = _every_key_once()
    async with db.pool(private_database_url, max_size=2) as pool:
        await db.migrate(pool, "dispatch", "dispatcher")
        alone, alone_tables, _ = await _apply(pool, batch, merged=False, setup=setup)
        merged, merged_tables, group = await _apply(pool, batch, merged=True, setup=setup)

    assert group is not None
    assert group.batches == 1, f"{group.batches} transactions for {len(batch)} calls"
    assert merged == alone
    assert merged_tables == alone_tables
    kinds = [r[0] if r else None for r in alone]
    assert kinds[:5] == ["sent", "failed", "claimed", "deferred", "in_flight"]
    assert set(kinds[30:50]) == {"claimed"}  # new keys
    assert kinds[50:] == [None] * 5  # settles answer nothing
    assert len(merged_tables["outbox"]) == len(alone_tables["outbox"]) > 5
