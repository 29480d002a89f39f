"""PostgresRateLimits over schema ``enricher``: one error budget, one pair of windows and one
caller at a time per (connection, division), across every enricher replica.

    turn ─▶ local lock (this process's callers queue in memory, one of them asks PostgreSQL)
      └─▶ upsert … WHERE busy_until < now() RETURNING the windows   (taken: a lease)
            ├─ no row back: another replica holds it ─▶ sleep (20 ms, doubling to 250 ms), ask again
            └─ call Exact, holding no database connection
      ◀── UPDATE: windows read, busy_until = -infinity (only by the lease's holder)

A lease runs ``lease`` seconds (longer than one HTTP call) and is extended before a wait for a
window's reset; a replica that dies holding it blocks the division until it runs out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from enricher.governor import Turn, Window, Windows

__all__ = ["PostgresRateLimits"]

#: First and longest pause between two asks for a turn another replica holds (seconds). A call
#: to Exact takes ~0.1-1 s; the cap keeps a waiting replica to four queries a second.
_POLL_FIRST = 0.02
_POLL_MAX = 0.25

_TAKE = """
INSERT INTO enricher.rate_limits AS r (connection_id, division, busy_until, holder)
VALUES ($1, $2, now() + make_interval(secs => $3), $4)
ON CONFLICT (connection_id, division) DO UPDATE
    SET busy_until = EXCLUDED.busy_until, holder = EXCLUDED.holder
    WHERE r.busy_until < now()
RETURNING minutely_remaining, minutely_reset_at, daily_remaining, daily_reset_at
"""

_KEEP = """
UPDATE enricher.rate_limits
   SET busy_until = greatest(busy_until, now() + make_interval(secs => $4))
 WHERE connection_id = $1 AND division = $2 AND holder = $3
"""

_GIVE_BACK = """
UPDATE enricher.rate_limits
   SET busy_until = '-infinity', holder = NULL,
       minutely_remaining = $4, minutely_reset_at = $5,
       daily_remaining = $6, daily_reset_at = $7, updated_at = now()
 WHERE connection_id = $1 AND division = $2 AND holder = $3
"""

_ERRORS = """
SELECT errors FROM enricher.rate_limit_errors
 WHERE connection_id = $1 AND division = $2 AND endpoint = $3
   AND hour_at = to_timestamp($4::bigint * 3600)
"""

_ADD_ERROR = """
WITH past AS (
    DELETE FROM enricher.rate_limit_errors
     WHERE connection_id = $1 AND division = $2 AND hour_at < to_timestamp($4::bigint * 3600)
)
INSERT INTO enricher.rate_limit_errors AS e (connection_id, division, endpoint, hour_at, errors)
VALUES ($1, $2, $3, to_timestamp($4::bigint * 3600), 1)
ON CONFLICT (connection_id, division, endpoint, hour_at) DO UPDATE SET errors = e.errors + 1
RETURNING errors
"""


def _epoch(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def _at(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


@dataclass
class _Lease:
    db: asyncpg.Pool
    key: tuple[str, int]
    holder: uuid.UUID
    lease: float
    windows: Windows = field(default_factory=Windows)

    async def keep(self, seconds: float) -> None:
        await self.db.execute(_KEEP, *self.key, self.holder, seconds + self.lease)


class PostgresRateLimits:
    """``RateLimitStore`` in ``enricher.rate_limits`` and ``enricher.rate_limit_errors``.

    ``lease``: seconds a turn is held without being handed back; longer than one call to Exact
    (its HTTP timeout), short enough that a crashed holder does not stall the division long.
    """

    def __init__(self, db: asyncpg.Pool, *, lease: float) -> None:
        self._db = db
        self._lease = lease
        self._local: dict[tuple[str, int], asyncio.Lock] = {}

    @asynccontextmanager
    async def turn(self, connection_id: str, division: int) -> AsyncIterator[Turn]:
        async with self._local.setdefault((connection_id, division), asyncio.Lock()):
            held = _Lease(self._db, (connection_id, division), uuid.uuid4(), self._lease)
            pause = _POLL_FIRST
            while (
                row := await self._db.fetchrow(_TAKE, *held.key, self._lease, held.holder)
            ) is None:
                await asyncio.sleep(pause)
                pause = min(pause * 2, _POLL_MAX)
            held.windows = Windows(
                Window(row["minutely_remaining"], _epoch(row["minutely_reset_at"])),
                Window(row["daily_remaining"], _epoch(row["daily_reset_at"])),
            )
            try:
                yield held
            finally:
                minutely, daily = held.windows.minutely, held.windows.daily
                await self._db.execute(
                    _GIVE_BACK,
                    *held.key,
                    held.holder,
                    minutely.remaining,
                    _at(minutely.reset),
                    daily.remaining,
                    _at(daily.reset),
                )

    async def errors(self, connection_id: str, division: int, endpoint: str, hour: int) -> int:
        count = await self._db.fetchval(_ERRORS, connection_id, division, endpoint, hour)
        return int(count or 0)

    async def add_error(self, connection_id: str, division: int, endpoint: str, hour: int) -> int:
        return int(await self._db.fetchval(_ADD_ERROR, connection_id, division, endpoint, hour))
