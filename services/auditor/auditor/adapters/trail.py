"""PostgresTrail over schema ``audit``: the only writer of the audit tables."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from auditor.status import rank
from common.contracts import (
    NotificationAmbiguous,
    NotificationFailed,
    NotificationSent,
    NotificationSkipped,
    SendNotification,
    TwilioStatus,
)

__all__ = ["PostgresTrail"]


class PostgresTrail:
    def __init__(self, db: asyncpg.Pool) -> None:
        self._db = db

    async def requested(self, c: SendNotification) -> None:
        s = c.source
        await self._db.execute(
            """INSERT INTO audit.notifications (notification_id, idempotency_key, channel,
                   connection_id, division, entity, document_id, document_number, fact,
                   recipient, template, content, requested_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
               ON CONFLICT (notification_id) DO UPDATE SET
                   idempotency_key = EXCLUDED.idempotency_key, channel = EXCLUDED.channel,
                   connection_id = EXCLUDED.connection_id, division = EXCLUDED.division,
                   entity = EXCLUDED.entity, document_id = EXCLUDED.document_id,
                   document_number = EXCLUDED.document_number, fact = EXCLUDED.fact,
                   recipient = EXCLUDED.recipient, template = EXCLUDED.template,
                   content = EXCLUDED.content,
                   requested_at = coalesce(audit.notifications.requested_at, now())""",
            c.notification_id,
            c.idempotency_key,
            c.channel,
            s.connection_id,
            s.division,
            s.entity,
            s.id,
            s.number,
            c.fact,
            c.recipient.address,
            c.template,
            c.content,
        )

    async def outcome(
        self, message_id: str, event: NotificationSent | NotificationFailed | NotificationAmbiguous
    ) -> None:
        outcome = event.routing_key.split(".")[-1]
        provider_id = getattr(event, "provider_id", None)
        async with self._db.acquire() as db, db.transaction():
            inserted = await db.fetchval(
                """INSERT INTO audit.attempts (message_id, notification_id, outcome, attempt,
                       provider_id, error_class, error_code, error)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (message_id) DO NOTHING RETURNING id""",
                message_id,
                event.notification_id,
                outcome,
                event.attempt,
                provider_id,
                getattr(event, "error_class", None),
                getattr(event, "error_code", None),
                getattr(event, "error", None),
            )
            if inserted is None:
                return  # a redelivered event: recorded already
            await db.execute(
                """INSERT INTO audit.notifications (notification_id, state, provider_id, channel)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (notification_id) DO UPDATE SET state = EXCLUDED.state,
                       provider_id = coalesce(EXCLUDED.provider_id,
                                              audit.notifications.provider_id),
                       updated_at = now()""",
                event.notification_id,
                outcome,
                provider_id,
                event.channel,
            )

    async def skipped(self, message_id: str, event: NotificationSkipped) -> None:
        s = event.source
        await self._db.execute(
            """INSERT INTO audit.notifications (notification_id, connection_id, division, entity,
                   document_id, document_number, fact, state, requested_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, 'skipped', now())
               ON CONFLICT (notification_id) DO NOTHING""",
            event.notification_id,
            s.connection_id,
            s.division,
            s.entity,
            s.id,
            s.number,
            event.fact,
        )
        await self._db.execute(
            """INSERT INTO audit.attempts (message_id, notification_id, outcome, error)
               VALUES ($1, $2, 'skipped', $3) ON CONFLICT (message_id) DO NOTHING""",
            message_id,
            event.notification_id,
            event.reason,
        )

    async def status(self, event: TwilioStatus) -> None:
        """Keep every callback (exact repeats counted once) and move the current status only
        forward, in one transaction."""
        async with self._db.acquire() as db, db.transaction():
            await db.execute(
                """INSERT INTO audit.status_events (provider_id, status, error_code, raw,
                       received_at) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (provider_id, status) DO UPDATE
                       SET repeats = audit.status_events.repeats + 1""",
                event.provider_id,
                event.status,
                event.error_code,
                event.raw,
                event.received_at,
            )
            await db.execute(
                """INSERT INTO audit.statuses (provider_id, status, rank, error_code)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (provider_id) DO UPDATE SET status = EXCLUDED.status,
                       rank = EXCLUDED.rank, error_code = EXCLUDED.error_code, updated_at = now()
                   WHERE audit.statuses.rank < EXCLUDED.rank""",
                event.provider_id,
                event.status,
                rank(event.status),
                event.error_code,
            )

    async def document_trail(
        self,
        *,
        number: str | None = None,
        document_id: UUID | None = None,
        connection_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Every notification about one document, with its attempts and statuses."""
        rows = await self._db.fetch(
            """SELECT n.*, s.status AS delivery_status, s.error_code AS delivery_error_code
               FROM audit.notifications n LEFT JOIN audit.statuses s USING (provider_id)
               WHERE ($1::text IS NULL OR n.document_number = $1)
                 AND ($2::uuid IS NULL OR n.document_id = $2)
                 AND ($3::text IS NULL OR n.connection_id = $3)
                 AND ($1::text IS NOT NULL OR $2::uuid IS NOT NULL)
               ORDER BY n.requested_at NULLS LAST""",
            number,
            document_id,
            connection_id,
        )
        trail = []
        for row in rows:
            item = {k: (str(v) if isinstance(v, UUID) else v) for k, v in dict(row).items()}
            item["attempts"] = [
                dict(a)
                for a in await self._db.fetch(
                    """SELECT outcome, attempt, provider_id, error_class, error_code, error,
                          recorded_at FROM audit.attempts WHERE notification_id = $1
                   ORDER BY id""",
                    row["notification_id"],
                )
            ]
            item["status_history"] = [
                dict(e)
                for e in await self._db.fetch(
                    """SELECT status, error_code, received_at, repeats FROM audit.status_events
                   WHERE provider_id = $1 ORDER BY received_at, id""",
                    row["provider_id"],
                )
            ]
            trail.append(item)
        return trail
