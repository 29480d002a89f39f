"""The outbox relay: publishes, with publisher confirms, the events that claim changes queued
in ``dispatch.outbox``, and deletes them once relayed.

Rows are taken in id order under ``FOR UPDATE SKIP LOCKED`` (replicas share the work) and
deleted in the same transaction after every publish of the batch was confirmed. A relay that
dies mid-batch deletes nothing: the next one publishes the batch again (at-least-once; the
events' message ids are deterministic and the auditor records each once). The events
themselves stay in the audit trail; the outbox holds only what is still to be relayed
(migration 005).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import asyncpg
import structlog

from common.contracts import (
    Message,
    NotificationAmbiguous,
    NotificationDeferred,
    NotificationFailed,
    NotificationReleased,
    NotificationSent,
    NotificationSkipped,
    SuppressionChanged,
)
from dispatcher.metrics import DispatchMetrics

__all__ = ["OUTBOX_MODELS", "forget_old_commands", "pending", "relay_forever", "relay_once"]

log = structlog.get_logger("dispatcher.outbox")

#: Routing key -> model of every event the dispatcher queues in its outbox (a key the relay
#: does not know would stop it at that row: tests/unit/dispatcher checks each queued type).
OUTBOX_MODELS: dict[str, type[Message]] = {
    **{
        m.routing_key: m
        for m in (
            NotificationSent,
            NotificationFailed,
            NotificationAmbiguous,
            NotificationDeferred,
            NotificationReleased,
            NotificationSkipped,
        )
    },
    "suppression.added": SuppressionChanged,
    "suppression.lifted": SuppressionChanged,
}

#: Rows marked relayed (``relayed_at``, by a replica of a version before migration 005, which
#: marked instead of deleting) are deleted this long after.
_KEEP_DAYS = 7


class EventPublisher(Protocol):
    async def publish(self, message: Message, *, correlation_id: str | None = None) -> None: ...


async def relay_once(db: asyncpg.Pool, publisher: EventPublisher, *, limit: int = 100) -> int:
    """Publish up to ``limit`` pending events, confirmed, and delete them. Returns how many."""
    async with db.acquire() as connection, connection.transaction():
        rows = await connection.fetch(
            """SELECT id, message_type, body, correlation_id FROM dispatch.outbox
               WHERE relayed_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
        # Published together: the events of one type leave as one batch (ADR 0010), in id
        # order, their confirms awaited together. Consumers do not rely on the order across
        # types (the trail only moves forward). Any refusal rolls back and deletes none.
        await asyncio.gather(
            *(
                publisher.publish(
                    OUTBOX_MODELS[row["message_type"]].model_validate(row["body"]),
                    correlation_id=row["correlation_id"],
                )
                for row in rows
            )
        )
        if rows:
            await connection.execute(
                "DELETE FROM dispatch.outbox WHERE id = ANY($1::bigint[])",
                [row["id"] for row in rows],
            )
    return len(rows)


async def pending(db: asyncpg.Pool) -> int:
    """Events committed and not yet relayed."""
    return int(await db.fetchval("SELECT count(*) FROM dispatch.outbox WHERE relayed_at IS NULL"))


async def forget_old_commands(db: asyncpg.Pool, days: float) -> int:
    """Drop the command (recipient address and text) kept with claims settled more than
    ``days`` ago: it serves only to resolve or release a send, and is personal data. The claim
    itself (the idempotency key and its state) stays, so the notification is never sent again.
    Returns how many claims were cleared."""
    status = await db.execute(
        """UPDATE dispatch.claims SET command = NULL
           WHERE command IS NOT NULL AND state IN ('sent', 'failed', 'skipped', 'released')
             AND updated_at < now() - make_interval(secs => $1)""",
        days * 86400,
    )
    return int(status.rsplit(" ", 1)[-1])


async def relay_forever(
    db: asyncpg.Pool,
    publisher: EventPublisher,
    wake: asyncio.Event,
    stop: asyncio.Event,
    *,
    poll_seconds: float = 1.0,
    max_backoff: float = 30.0,
    metrics: DispatchMetrics | None = None,
    command_days: float = 30.0,
) -> None:
    """Relay until ``stop``: at once when woken, else every ``poll_seconds``. A failure (broker
    or database gone) is logged and retried with backoff; nothing is lost meanwhile. About
    hourly it also deletes rows an earlier version marked relayed more than a week ago and
    forgets the commands of old settled claims (``forget_old_commands``)."""
    backoff = poll_seconds
    rounds = 0
    while not stop.is_set():
        try:
            while relayed := await relay_once(db, publisher):
                if metrics is not None:
                    metrics.relayed.inc(relayed)
            rounds += 1
            if rounds % 3600 == 1:
                await db.execute(
                    """DELETE FROM dispatch.outbox
                       WHERE relayed_at < now() - make_interval(days => $1)""",
                    _KEEP_DAYS,
                )
                await forget_old_commands(db, command_days)
            backoff = poll_seconds
        except Exception as exc:  # the loop must outlive a broker or database outage
            log.warning("outbox_relay_failed", error=type(exc).__name__, retry_in=backoff)
            await _measure(db, metrics)
            await _sleep(stop, backoff)
            backoff = min(backoff * 2, max_backoff)
            continue
        await _measure(db, metrics)
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(wake, stop), poll_seconds)


async def _measure(db: asyncpg.Pool, metrics: DispatchMetrics | None) -> None:
    if metrics is None:
        return
    try:
        metrics.pending.set(await pending(db))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return  # the database is gone too; the gauge keeps its last value


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
