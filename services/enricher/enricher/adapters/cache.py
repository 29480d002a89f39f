"""PostgresCustomerCache over schema ``enricher`` (``migrations/001_cache.sql``), and
DisabledCustomerCache for a TTL of 0 (every read goes to Exact).

An entry is an account row plus the contact rows read under it. A fill stores only while the
account's ``generation`` is the one its lookup saw; an invalidation raises the generation
(creating the row if needed), so a fill racing a webhook loses and the next read refetches.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg

from common.groupread import GroupRead
from enricher.ports import CacheLookup, Customer, Record

__all__ = ["DisabledCustomerCache", "PostgresCustomerCache"]


def _contact_id(contact: Record) -> UUID | None:
    try:
        return UUID(str(contact.get("ID")))
    except ValueError:
        return None


class PostgresCustomerCache:
    """Implements ``CustomerCache``; entries older than ``ttl`` seconds are misses."""

    def __init__(self, db: asyncpg.Pool, *, ttl: float) -> None:
        self._db = db
        self._ttl = ttl
        # the reads of concurrent deliveries, one query for those that wait together
        self._reads: GroupRead[tuple[str, int, UUID], asyncpg.Record] = GroupRead(self._get)

    async def get(self, connection_id: str, division: int, account_id: UUID) -> CacheLookup:
        row = await self._reads.get((connection_id, division, account_id))
        if row is None:
            return CacheLookup(None, 0)
        if row["record"] is None or not row["fresh"]:
            return CacheLookup(None, row["generation"], row["invalidated_at"])
        customer = Customer(row["record"], list(row["contacts"]))
        return CacheLookup(customer, row["generation"], row["invalidated_at"])

    async def _get(
        self, keys: list[tuple[str, int, UUID]]
    ) -> dict[tuple[str, int, UUID], asyncpg.Record]:
        rows = await self._db.fetch(
            """SELECT a.connection_id, a.division, a.account_id, a.record, a.generation,
                      a.invalidated_at, a.fetched_at > now() - make_interval(secs => $4) AS fresh,
                      coalesce((SELECT jsonb_agg(c.record ORDER BY c.contact_id)
                                FROM enricher.contacts c
                                WHERE c.connection_id = a.connection_id
                                  AND c.division = a.division
                                  AND c.account_id = a.account_id), '[]'::jsonb) AS contacts
               FROM unnest($1::text[], $2::int[], $3::uuid[])
                   AS k(connection_id, division, account_id)
               JOIN enricher.accounts a USING (connection_id, division, account_id)""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
            float(self._ttl),
        )
        return {(r["connection_id"], r["division"], r["account_id"]): r for r in rows}

    async def put(
        self,
        connection_id: str,
        division: int,
        account_id: UUID,
        customer: Customer,
        *,
        generation: int,
    ) -> bool:
        contacts = sorted(
            (cid, contact)
            for contact in customer.contacts
            if (cid := _contact_id(contact)) is not None
        )
        async with self._db.acquire() as db, db.transaction():
            stored = await db.fetchval(
                """INSERT INTO enricher.accounts
                       (connection_id, division, account_id, record, generation, fetched_at)
                   VALUES ($1, $2, $3, $4, $5, now())
                   ON CONFLICT (connection_id, division, account_id) DO UPDATE
                       SET record = excluded.record, fetched_at = excluded.fetched_at
                       WHERE accounts.generation = excluded.generation
                   RETURNING true""",
                connection_id,
                division,
                account_id,
                customer.account,
                generation,
            )
            if not stored:
                return False
            await db.execute(
                """DELETE FROM enricher.contacts
                   WHERE connection_id = $1 AND division = $2 AND account_id = $3""",
                connection_id,
                division,
                account_id,
            )
            # Sorted by id: concurrent fills lock contact rows in one order, never deadlock.
            await db.executemany(
                """INSERT INTO enricher.contacts
                       (connection_id, division, contact_id, account_id, record)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (connection_id, division, contact_id) DO UPDATE
                       SET account_id = excluded.account_id, record = excluded.record""",
                [(connection_id, division, cid, account_id, contact) for cid, contact in contacts],
            )
        return True

    async def invalidate_account(self, connection_id: str, division: int, account_id: UUID) -> None:
        async with self._db.acquire() as db, db.transaction():
            await self._invalidate(db, connection_id, division, account_id)

    async def invalidate_contact(
        self, connection_id: str, division: int, contact_id: UUID
    ) -> UUID | None:
        async with self._db.acquire() as db, db.transaction():
            account_id: UUID | None = await db.fetchval(
                """SELECT account_id FROM enricher.contacts
                   WHERE connection_id = $1 AND division = $2 AND contact_id = $3""",
                connection_id,
                division,
                contact_id,
            )
            if account_id is not None:
                await self._invalidate(db, connection_id, division, account_id)
            return account_id

    async def forget_contact(self, connection_id: str, contact_id: UUID) -> int:
        """Drop every cached entry holding the contact (in any division): the next read asks
        Exact. Returns how many account entries were dropped."""
        async with self._db.acquire() as db, db.transaction():
            rows = await db.fetch(
                """SELECT DISTINCT division, account_id FROM enricher.contacts
                   WHERE connection_id = $1 AND contact_id = $2""",
                connection_id,
                contact_id,
            )
            for row in rows:
                await self._invalidate(db, connection_id, row["division"], row["account_id"])
        return len(rows)

    @staticmethod
    async def _invalidate(
        db: asyncpg.Connection, connection_id: str, division: int, account_id: UUID
    ) -> None:
        await db.execute(
            """INSERT INTO enricher.accounts
                   (connection_id, division, account_id, generation, invalidated_at)
               VALUES ($1, $2, $3, 1, now())
               ON CONFLICT (connection_id, division, account_id) DO UPDATE
                   SET record = NULL, fetched_at = NULL, invalidated_at = now(),
                       generation = accounts.generation + 1""",
            connection_id,
            division,
            account_id,
        )
        await db.execute(
            """DELETE FROM enricher.contacts
               WHERE connection_id = $1 AND division = $2 AND account_id = $3""",
            connection_id,
            division,
            account_id,
        )


class DisabledCustomerCache:
    """Implements ``CustomerCache`` by remembering nothing."""

    async def forget_contact(self, connection_id: str, contact_id: UUID) -> int:
        return 0

    async def get(self, connection_id: str, division: int, account_id: UUID) -> CacheLookup:
        return CacheLookup(None, 0)

    async def put(
        self,
        connection_id: str,
        division: int,
        account_id: UUID,
        customer: Customer,
        *,
        generation: int,
    ) -> bool:
        return False

    async def invalidate_account(self, connection_id: str, division: int, account_id: UUID) -> None:
        return None

    async def invalidate_contact(
        self, connection_id: str, division: int, contact_id: UUID
    ) -> UUID | None:
        return None
