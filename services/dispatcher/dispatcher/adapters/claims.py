"""PostgresClaimStore over schema ``dispatch``: the claim taken before a send."""

from __future__ import annotations

import asyncpg

from dispatcher.ports import Claim

__all__ = ["PostgresClaimStore"]


class PostgresClaimStore:
    def __init__(self, db: asyncpg.Pool, *, stale_seconds: float) -> None:
        self._db = db
        self._stale = stale_seconds

    async def claim(self, key: str, notification_id: str, channel: str) -> Claim:
        """Take the claim unless someone holds or used it. One statement: no race between
        replicas, the unique key decides."""
        async with self._db.acquire() as db, db.transaction():
            row = await db.fetchrow(
                """INSERT INTO dispatch.claims (idempotency_key, notification_id, channel, state)
                   VALUES ($1, $2, $3, 'sending')
                   ON CONFLICT (idempotency_key) DO UPDATE
                       SET state = 'sending', attempts = claims.attempts + 1,
                           claimed_at = now(), updated_at = now()
                       WHERE claims.state = 'released'
                   RETURNING attempts""",
                key,
                notification_id,
                channel,
            )
            if row is not None:
                return Claim("claimed", row["attempts"])
            held = await db.fetchrow(
                """SELECT state, attempts, provider_id,
                          now() - claimed_at > make_interval(secs => $2) AS stale
                   FROM dispatch.claims WHERE idempotency_key = $1 FOR UPDATE""",
                key,
                self._stale,
            )
            state = held["state"]
            if state == "sending" and held["stale"]:
                return Claim("stale", held["attempts"])
            if state == "sending":
                return Claim("in_flight", held["attempts"])
            return Claim(state, held["attempts"], held["provider_id"])

    async def mark(
        self, key: str, state: str, *, provider_id: str | None = None, error_code: str | None = None
    ) -> None:
        await self._db.execute(
            """UPDATE dispatch.claims SET state = $2, provider_id = coalesce($3, provider_id),
                   error_code = $4, updated_at = now() WHERE idempotency_key = $1""",
            key,
            state,
            provider_id,
            error_code,
        )
