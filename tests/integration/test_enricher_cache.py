"""PostgresCustomerCache on the real database: entries, TTL, invalidation by account and by
contact, and a fill that raced an invalidation never stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import pytest
import pytest_asyncio

from common import db
from enricher.adapters.cache import PostgresCustomerCache
from enricher.ports import Customer

pytestmark = pytest.mark.integration

DIVISION = 3108123


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with db.pool(database_url) as created:
        await db.migrate(created, "enricher", "enricher")
        yield created


@pytest.fixture
def connection_id() -> str:
    """A connection of this test's own: tests share the session's database."""
    return f"test-{uuid4().hex[:10]}"


def customer(account: UUID, *contacts: UUID, name: str = "Bakkerij") -> Customer:
    return Customer(
        {"ID": str(account), "Name": name, "MainContact": str(contacts[0]) if contacts else None},
        [
            {"ID": str(c), "Account": str(account), "Mobile": f"+3161234567{i}"}
            for i, c in enumerate(contacts)
        ],
    )


async def test_a_stored_customer_comes_back_with_its_contacts(pool, connection_id):
    cache = PostgresCustomerCache(pool, ttl=3600)
    account, first, second = uuid4(), uuid4(), uuid4()
    miss = await cache.get(connection_id, DIVISION, account)
    assert miss.customer is None

    entry = customer(account, first, second)
    assert await cache.put(connection_id, DIVISION, account, entry, generation=miss.generation)

    hit = await cache.get(connection_id, DIVISION, account)
    assert hit.customer is not None
    assert hit.customer.account == entry.account
    assert sorted(c["ID"] for c in hit.customer.contacts) == sorted([str(first), str(second)])
    # other divisions and connections do not see it
    assert (await cache.get(connection_id, DIVISION + 1, account)).customer is None
    assert (await cache.get(connection_id + "-other", DIVISION, account)).customer is None


async def test_a_refill_replaces_the_contacts_of_the_account(pool, connection_id):
    cache = PostgresCustomerCache(pool, ttl=3600)
    account, old, new = uuid4(), uuid4(), uuid4()
    await cache.put(connection_id, DIVISION, account, customer(account, old), generation=0)
    await cache.put(connection_id, DIVISION, account, customer(account, new), generation=0)
    hit = await cache.get(connection_id, DIVISION, account)
    assert hit.customer is not None
    assert [c["ID"] for c in hit.customer.contacts] == [str(new)]


async def test_an_entry_older_than_the_ttl_is_a_miss(pool, connection_id):
    cache = PostgresCustomerCache(pool, ttl=3600)
    account = uuid4()
    await cache.put(connection_id, DIVISION, account, customer(account, uuid4()), generation=0)
    await pool.execute(
        """UPDATE enricher.accounts SET fetched_at = now() - interval '61 minutes'
           WHERE connection_id = $1 AND account_id = $2""",
        connection_id,
        account,
    )
    assert (await cache.get(connection_id, DIVISION, account)).customer is None


async def test_an_accounts_webhook_drops_the_entry(pool, connection_id):
    cache = PostgresCustomerCache(pool, ttl=3600)
    account, contact = uuid4(), uuid4()
    await cache.put(connection_id, DIVISION, account, customer(account, contact), generation=0)

    await cache.invalidate_account(connection_id, DIVISION, account)

    lookup = await cache.get(connection_id, DIVISION, account)
    assert lookup.customer is None
    assert lookup.generation == 1
    # its contacts went with it: a later Contacts webhook finds nothing to drop
    assert await cache.invalidate_contact(connection_id, DIVISION, contact) is None
    # refilled at the current generation, it is an entry again
    assert await cache.put(
        connection_id, DIVISION, account, customer(account, contact), generation=1
    )
    assert (await cache.get(connection_id, DIVISION, account)).customer is not None


async def test_a_contacts_webhook_drops_the_entry_of_the_account_it_was_read_under(
    pool, connection_id
):
    cache = PostgresCustomerCache(pool, ttl=3600)
    account, other_account, contact = uuid4(), uuid4(), uuid4()
    await cache.put(connection_id, DIVISION, account, customer(account, contact), generation=0)
    await cache.put(
        connection_id, DIVISION, other_account, customer(other_account, uuid4()), generation=0
    )

    assert await cache.invalidate_contact(connection_id, DIVISION, contact) == account

    assert (await cache.get(connection_id, DIVISION, account)).customer is None
    assert (await cache.get(connection_id, DIVISION, other_account)).customer is not None
    assert await cache.invalidate_contact(connection_id, DIVISION, uuid4()) is None


async def test_a_fill_that_read_exact_before_an_invalidation_is_not_stored(pool, connection_id):
    cache = PostgresCustomerCache(pool, ttl=3600)
    account = uuid4()
    # a never-seen account: the webhook arrives while the first read is under way
    before = await cache.get(connection_id, DIVISION, account)
    await cache.invalidate_account(connection_id, DIVISION, account)
    stale = customer(account, uuid4(), name="Old name")
    assert not await cache.put(
        connection_id, DIVISION, account, stale, generation=before.generation
    )
    assert (await cache.get(connection_id, DIVISION, account)).customer is None

    # and the same for an entry that is being refreshed
    current = await cache.get(connection_id, DIVISION, account)
    assert await cache.put(
        connection_id, DIVISION, account, customer(account), generation=current.generation
    )
    refreshing = await cache.get(connection_id, DIVISION, account)
    await cache.invalidate_account(connection_id, DIVISION, account)
    assert not await cache.put(
        connection_id, DIVISION, account, stale, generation=refreshing.generation
    )


async def test_the_migration_is_applied_once(pool):
    assert await db.migrate(pool, "enricher", "enricher") == []
    versions = await pool.fetch("SELECT version FROM enricher.schema_migrations")
    assert "001_cache.sql" in {r["version"] for r in versions}
