"""PostgresSuppressions over ``dispatch.suppressions``: the addresses never sent to.

Each change and its ``SuppressionChanged`` event are committed together (the outbox relay
publishes the event), so the audit trail and the enricher learn of every change, and a
repeated feed (the same STOP twice, a bounce posted again) changes nothing the second time.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from common.contracts import INSTALL_SCOPE, SuppressionChanged, address_key
from common.groupread import GroupRead
from common.logging import mask_text
from dispatcher.adapters.claims import queue_event
from dispatcher.ports import Suppression

__all__ = ["PostgresSuppressions"]

_SUPPRESSION_FIELDS = ("connection_id", "channel", "address_masked", "reason", "source")


class PostgresSuppressions:
    def __init__(self, db: asyncpg.Pool, *, wake: asyncio.Event | None = None) -> None:
        self._db = db
        self._wake = wake
        # the look-ups of concurrent sends, one query for those that wait together
        self._lookups: GroupRead[tuple[str, str, str], Suppression] = GroupRead(self._find)

    async def find(self, connection_id: str, channel: str, address: str) -> Suppression | None:
        """The oldest suppression of ``address`` on ``channel`` for the connection or the
        whole install."""
        return await self._lookups.get((address_key(address), channel, connection_id))

    async def _find(
        self, keys: list[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], Suppression]:
        rows = await self._db.fetch(
            """SELECT DISTINCT ON (k.ord) k.ord, s.connection_id, s.channel, s.address_masked,
                      s.reason, s.source
               FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY
                   AS k(address_key, channel, connection_id, ord)
               JOIN dispatch.suppressions s ON s.address_key = k.address_key
                   AND s.channel = k.channel AND s.connection_id IN (k.connection_id, $4)
               ORDER BY k.ord, s.created_at""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            INSTALL_SCOPE,
        )
        return {
            keys[row["ord"] - 1]: Suppression(**{name: row[name] for name in _SUPPRESSION_FIELDS})
            for row in rows
        }

    async def add(
        self,
        scope: str,
        channels: tuple[str, ...],
        address: str,
        *,
        reason: str,
        source: str,
        notification_id: str | None = None,
        created_by: str | None = None,
    ) -> int:
        key, masked, now = address_key(address), mask_text(address), datetime.now(UTC)
        added = 0
        async with self._db.acquire() as db, db.transaction():
            for channel in channels:
                new = await db.fetchval(
                    """INSERT INTO dispatch.suppressions (connection_id, channel, address_key,
                           address_masked, reason, source, notification_id, created_by)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                       ON CONFLICT DO NOTHING RETURNING true""",
                    scope,
                    channel,
                    key,
                    masked,
                    reason,
                    source,
                    notification_id,
                    created_by,
                )
                if not new:
                    continue
                added += 1
                await queue_event(
                    db,
                    SuppressionChanged(
                        action="added",
                        connection_id=scope,
                        channel=channel,
                        address_key=key,
                        address_masked=masked,
                        reason=reason,
                        source=source,
                        notification_id=notification_id,
                        requested_by=created_by,
                        occurred_at=now,
                    ),
                )
        self._queued(added)
        return added

    async def lift(
        self,
        scope: str | None,
        channels: tuple[str, ...],
        address: str,
        *,
        reasons: tuple[str, ...] | None,
        source: str,
        requested_by: str | None = None,
        note: str | None = None,
    ) -> int:
        key, now = address_key(address), datetime.now(UTC)
        async with self._db.acquire() as db, db.transaction():
            rows = await db.fetch(
                """DELETE FROM dispatch.suppressions
                   WHERE address_key = $1 AND ($2::text IS NULL OR connection_id = $2)
                     AND channel = ANY($3::text[])
                     AND ($4::text[] IS NULL OR reason = ANY($4::text[]))
                   RETURNING connection_id, channel, address_masked, reason""",
                key,
                scope,
                list(channels),
                None if reasons is None else list(reasons),
            )
            for row in rows:
                await queue_event(
                    db,
                    SuppressionChanged(
                        action="lifted",
                        connection_id=row["connection_id"],
                        channel=row["channel"],
                        address_key=key,
                        address_masked=row["address_masked"],
                        reason=row["reason"],
                        source=source,
                        requested_by=requested_by,
                        note=note,
                        occurred_at=now,
                    ),
                )
        self._queued(len(rows))
        return len(rows)

    async def listing(
        self, *, connection_id: str | None = None, limit: int = 100
    ) -> list[asyncpg.Record]:
        """The newest suppressions first (masked addresses only), for ``mlc suppressions``."""
        rows: list[asyncpg.Record] = await self._db.fetch(
            """SELECT connection_id, channel, address_masked, reason, source, created_by,
                      created_at
               FROM dispatch.suppressions
               WHERE $1::text IS NULL OR connection_id IN ($1, '*')
               ORDER BY created_at DESC LIMIT $2""",
            connection_id,
            limit,
        )
        return rows

    def _queued(self, count: int) -> None:
        if count and self._wake is not None:
            self._wake.set()
