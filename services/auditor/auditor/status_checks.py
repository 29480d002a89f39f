"""Asking for the statuses that never came.

A status callback can be lost (ingress down, a callback Twilio gave up on). An SMS or call
``sent`` for longer than a deadline without a final status (see ``auditor.status``: delivered,
undelivered, failed, canceled, read; completed, busy, no-answer, answered, voicemail) gets a
``CheckDeliveryStatus`` command naming its channel; the dispatcher fetches the message or call
from Twilio and reports its status as a callback would. Each notification is asked at most
``max_checks`` times, a deadline apart.

Email is never asked: SendGrid has no API that returns one message's status (its events come
only through the event webhook), so a command would be work the dispatcher cannot do.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Protocol

import asyncpg
import structlog

from auditor.status import FINAL_RANK
from common.contracts import CheckDeliveryStatus, Message

__all__ = ["check_forever", "due_checks"]

log = structlog.get_logger("auditor.status_checks")


class CommandPublisher(Protocol):
    async def publish(self, message: Message, *, correlation_id: str | None = None) -> None: ...


async def due_checks(
    db: asyncpg.Pool, *, after_seconds: float, max_checks: int, limit: int = 100
) -> list[CheckDeliveryStatus]:
    """The checks due now, each counted as asked (so replicas do not ask twice)."""
    rows = await db.fetch(
        """UPDATE audit.notifications SET status_checked_at = now(),
               status_checks = status_checks + 1
           WHERE notification_id IN (
               SELECT n.notification_id FROM audit.notifications n
               LEFT JOIN audit.statuses s USING (provider_id)
               WHERE n.state = 'sent' AND n.provider_id IS NOT NULL
                 AND n.connection_id IS NOT NULL
                 AND n.channel IS DISTINCT FROM 'email'  -- SendGrid cannot be asked
                 AND coalesce(s.rank, 0) < $3
                 AND n.updated_at < now() - make_interval(secs => $1)
                 AND (n.status_checked_at IS NULL
                      OR n.status_checked_at < now() - make_interval(secs => $1))
                 AND n.status_checks < $2
               ORDER BY n.updated_at LIMIT $4 FOR UPDATE OF n SKIP LOCKED)
           RETURNING notification_id, provider_id, connection_id, channel""",
        after_seconds,
        max_checks,
        FINAL_RANK,
        limit,
    )
    now = datetime.now(UTC)
    return [
        CheckDeliveryStatus(
            notification_id=r["notification_id"],
            provider_id=r["provider_id"],
            connection_id=r["connection_id"],
            channel=r["channel"],
            requested_at=now,
        )
        for r in rows
    ]


async def check_forever(
    db: asyncpg.Pool,
    publisher: CommandPublisher,
    stop: asyncio.Event,
    *,
    after_seconds: float,
    max_checks: int,
    interval: float,
) -> None:
    """Publish due checks every ``interval`` seconds until ``stop``; failures are logged and
    the loop goes on (a check lost to a failed publish is asked again a deadline later)."""
    while not stop.is_set():
        try:
            for check in await due_checks(db, after_seconds=after_seconds, max_checks=max_checks):
                await publisher.publish(check, correlation_id=str(check.notification_id))
        except Exception as exc:  # the loop must outlive a broker or database outage
            log.warning("status_check_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
