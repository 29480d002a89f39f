"""Forgetting one person (``mlc contacts forget``): the request carries every address the
enricher's cache knows; the enricher drops its cache entry, the preference and the addresses in
the commands it keeps; the dispatcher erases the recipient of settled claims and keeps the
suppression (an opt-out outlives the erasure)."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import aio_pika
import asyncpg
import pytest
import pytest_asyncio

from common import db, topology
from common.contracts import (
    ForgetContact,
    Recipient,
    SendNotification,
    SourceDocument,
)
from common.settings import ServiceSettings
from dispatcher import feeds
from dispatcher.adapters.claims import PostgresClaimStore
from dispatcher.adapters.suppressions import PostgresSuppressions
from enricher import privacy
from enricher.adapters.cache import PostgresCustomerCache
from enricher.adapters.notices import NoticeKey, PostgresNotices, PostgresPreferences
from enricher.commands import contacts
from enricher.ports import Customer

pytestmark = pytest.mark.integration

CONNECTION = "acme"
MOBILE, EMAIL = "+31612349876", "Lotte.Jansen@Klant.example"


@pytest_asyncio.fixture
async def pool(private_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with db.pool(private_database_url) as pool:
        await db.migrate(pool, "enricher", "enricher")
        await db.migrate(pool, "dispatch", "dispatcher")
        yield pool


def command(contact: UUID | None, address: str, channel: str = "sms") -> SendNotification:
    return SendNotification(
        notification_id=uuid4(),
        idempotency_key=uuid4().hex,
        channel=channel,  # type: ignore[arg-type]
        recipient=Recipient(contact_id=contact, address=address, name="Lotte Jansen"),
        template="invoice_issued",
        content="Beste Lotte, factuur 7",
        source=SourceDocument(
            connection_id=CONNECTION, division=7, entity="SalesInvoices", id=uuid4()
        ),
        fact="invoice_issued",
        rule="invoice-issued",
    )


async def cached_contact(pool: asyncpg.Pool, contact: UUID) -> UUID:
    account = uuid4()
    cache = PostgresCustomerCache(pool, ttl=3600)
    record = {"ID": str(contact), "Email": EMAIL, "Mobile": "06 1234 9876", "Country": "NL"}
    lookup = await cache.get(CONNECTION, 7, account)
    assert await cache.put(
        CONNECTION,
        7,
        account,
        Customer({"ID": str(account)}, [record]),
        generation=lookup.generation,
    )
    return account


def forget(contact: UUID | None, *addresses: str) -> ForgetContact:
    return ForgetContact(
        request_id=uuid4(),
        connection_id=CONNECTION,
        contact_id=contact,
        addresses=list(addresses),
        requested_by="dpo",
        requested_at=datetime.now(UTC),
    )


async def test_the_forget_command_asks_with_every_address_the_cache_knows(
    pool, amqp_url, private_database_url
):
    contact = uuid4()
    await cached_contact(pool, contact)
    broker = await aio_pika.connect_robust(amqp_url)
    channel = await broker.channel()
    await topology.declare(channel)
    probe = await channel.declare_queue(exclusive=True)
    await probe.bind("mlc.events", routing_key="privacy.forget")
    settings = ServiceSettings(amqp_url=amqp_url, database_url=private_database_url)
    said: list[str] = []
    args = argparse.Namespace(
        action="forget",
        contact=contact,
        connection=CONNECTION,
        address=["old@klant.example"],
        by="dpo",
        yes=False,
        channel=None,
    )
    assert await contacts.run(settings, args, said.append) == 2  # asks first
    assert await probe.get(fail=False) is None
    args.yes = True
    assert await contacts.run(settings, args, said.append) == 0
    message = await probe.get(timeout=5)
    await broker.close()
    event = ForgetContact.model_validate(json.loads(message.body))
    assert set(event.addresses) == {MOBILE, EMAIL, "old@klant.example"}
    assert (event.contact_id, event.requested_by) == (contact, "dpo")
    assert MOBILE not in " ".join(said)  # the operator sees masked addresses only


async def test_the_enricher_forgets_the_cached_contact_its_preference_and_kept_commands(pool):
    contact, other = uuid4(), uuid4()
    account = await cached_contact(pool, contact)
    preferences = PostgresPreferences(pool)
    await preferences.set(CONNECTION, contact, "email")
    notices = PostgresNotices(pool)
    theirs, someone_else = command(None, " +31 6 12349876"), command(other, "+31600000001")
    for rule, sent in (("a", theirs), ("b", someone_else)):
        key = NoticeKey(CONNECTION, 7, "SalesInvoices", sent.source.id, rule)
        await notices.record(key, "sent", due_at=datetime.now(UTC), number=None, message=sent)
    cache = PostgresCustomerCache(pool, ttl=3600)

    await privacy.forget(
        forget(contact, MOBILE, EMAIL), cache=cache, notices=notices, preferences=preferences
    )

    assert (await cache.get(CONNECTION, 7, account)).customer is None
    assert await pool.fetchval("SELECT count(*) FROM enricher.contacts") == 0
    assert await preferences.get_many(CONNECTION, [contact]) == {}
    kept = {
        r["rule"]: json.loads(r["message"])["recipient"]
        for r in await pool.fetch("SELECT rule, message::text FROM enricher.notices")
    }
    assert (kept["a"]["address"], kept["a"]["name"]) == ("erased", None)
    assert (kept["b"]["address"], kept["b"]["name"]) == ("+31600000001", "Lotte Jansen")
    dump = await pool.fetchval("SELECT string_agg(message::text, ' ') FROM enricher.notices")
    assert "12349876" not in dump


async def test_the_dispatcher_erases_settled_claims_and_keeps_the_opt_out(pool):
    contact = uuid4()
    claims = PostgresClaimStore(pool, stale_seconds=60)
    suppressions = PostgresSuppressions(pool)
    sent, in_flight, by_email = (
        command(contact, MOBILE),
        command(None, MOBILE),
        command(None, EMAIL.lower(), "email"),
    )
    for cmd in (sent, in_flight, by_email):
        assert (await claims.claim(cmd)).outcome == "claimed"
    for cmd in (sent, by_email):
        await pool.execute(
            "UPDATE dispatch.claims SET state = 'sent' WHERE idempotency_key = $1",
            cmd.idempotency_key,
        )
    await suppressions.add(CONNECTION, ("sms",), MOBILE, reason="opted_out", source="inbound:STOP")

    await feeds.on_forget(forget(contact, EMAIL), suppressions=suppressions, claims=claims)

    rows = {
        r["idempotency_key"]: json.loads(r["command"])["recipient"]["address"]
        for r in await pool.fetch("SELECT idempotency_key, command::text FROM dispatch.claims")
    }
    assert rows[sent.idempotency_key] == "erased"  # by contact id
    assert rows[by_email.idempotency_key] == "erased"  # by address, case aside
    assert rows[in_flight.idempotency_key] == MOBILE  # unsettled: the resolver may need it
    assert await suppressions.find(CONNECTION, "sms", MOBILE) is not None


async def test_old_settled_claims_lose_their_command_and_keep_the_claim(pool):
    from dispatcher.outbox import forget_old_commands

    claims = PostgresClaimStore(pool, stale_seconds=60)
    old, recent, unsettled = command(None, MOBILE), command(None, MOBILE), command(None, MOBILE)
    for cmd in (old, recent, unsettled):
        assert (await claims.claim(cmd)).outcome == "claimed"
    await pool.execute(
        """UPDATE dispatch.claims SET state = 'sent',
               updated_at = CASE WHEN idempotency_key = $1 THEN now() - interval '31 days'
                                 ELSE now() END
           WHERE idempotency_key = ANY($2::text[])""",
        old.idempotency_key,
        [old.idempotency_key, recent.idempotency_key],
    )
    await pool.execute(
        "UPDATE dispatch.claims SET updated_at = now() - interval '31 days' "
        "WHERE idempotency_key = $1",
        unsettled.idempotency_key,
    )
    assert await forget_old_commands(pool, 30) == 1
    kept = {
        r["idempotency_key"]: r["command"]
        for r in await pool.fetch("SELECT idempotency_key, command FROM dispatch.claims")
    }
    assert kept[old.idempotency_key] is None
    assert kept[recent.idempotency_key] is not None
    assert kept[unsettled.idempotency_key] is not None  # still needed to resolve its send
    assert (await claims.claim(old)).outcome == "sent"  # the claim still stops a resend
