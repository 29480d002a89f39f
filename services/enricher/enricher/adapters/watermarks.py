"""PostgresWatermarks over schema ``enricher``: reconciliation progress, one pass at a time.

A stream's mark is a row (``modified_through``, ``timestamp_through``): the newest ``Modified``
read and the highest sync row version (Exact's ``Timestamp``, a bigint) read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from enricher.reconcile import Mark

__all__ = ["PostgresWatermarks"]


class PostgresWatermarks:
    def __init__(self, db: asyncpg.Pool) -> None:
        self._db = db

    @asynccontextmanager
    async def exclusive(self, connection_id: str, division: int) -> AsyncIterator[bool]:
        """True inside the block when this replica holds the division's reconciliation; every
        replica runs the schedule, one of them does the pass."""
        async with self._db.acquire() as db:
            key = f"reconcile:{connection_id}:{division}"
            held = await db.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key)
            try:
                yield bool(held)
            finally:
                if held:
                    await db.execute("SELECT pg_advisory_unlock(hashtext($1))", key)

    async def load(self, connection_id: str, division: int) -> dict[str, Mark]:
        rows = await self._db.fetch(
            "SELECT stream, modified_through, timestamp_through FROM enricher.watermarks "
            "WHERE connection_id = $1 AND division = $2",
            connection_id,
            division,
        )
        return {r["stream"]: Mark(r["modified_through"], r["timestamp_through"]) for r in rows}

    async def commit(self, connection_id: str, division: int, marks: dict[str, Mark]) -> None:
        """Store the marks; a cursor is never dropped (a mark without one keeps the stored)."""
        await self._db.executemany(
            """INSERT INTO enricher.watermarks
                   (connection_id, division, stream, modified_through, timestamp_through)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (connection_id, division, stream) DO UPDATE
                   SET modified_through = COALESCE(EXCLUDED.modified_through,
                                                   watermarks.modified_through),
                       timestamp_through = COALESCE(EXCLUDED.timestamp_through,
                                                    watermarks.timestamp_through),
                       updated_at = now()""",
            [
                (connection_id, division, stream, mark.modified, mark.timestamp)
                for stream, mark in marks.items()
            ],
        )
