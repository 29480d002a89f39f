"""PostgresWatermarks over schema ``enricher``: reconciliation progress, one pass at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import asyncpg

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

    async def load(self, connection_id: str, division: int) -> dict[str, datetime | None]:
        rows = await self._db.fetch(
            "SELECT stream, modified_through FROM enricher.watermarks "
            "WHERE connection_id = $1 AND division = $2",
            connection_id,
            division,
        )
        return {r["stream"]: r["modified_through"] for r in rows}

    async def commit(self, connection_id: str, division: int, marks: dict[str, datetime]) -> None:
        await self._db.executemany(
            """INSERT INTO enricher.watermarks (connection_id, division, stream, modified_through)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (connection_id, division, stream) DO UPDATE
                   SET modified_through = EXCLUDED.modified_through, updated_at = now()""",
            [(connection_id, division, stream, mark) for stream, mark in marks.items()],
        )
