"""Accounts and Contacts webhooks drop the cached customer, read nothing and send nothing; and
concurrent readers of one customer share one read."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from policy_fakes import decider

from common.contracts import ExactWebhookReceived
from common.errors import TransientError
from enricher.customers import Customers
from enricher.handlers import handle_exact_event
from enricher.ports import Customer

CONNECTION, DIVISION = "default", 3108123
ACCOUNT = UUID("11111111-1111-4111-8111-111111111111")
CONTACT = UUID("22222222-2222-4222-8222-222222222222")


class CountingExact:
    """Answers every read and counts them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def get_one(
        self, connection_id, division, resource, key_field, key, select, changed_before=None
    ):  # type: ignore[no-untyped-def]
        self.calls.append(resource)
        return {"ID": str(key), "Name": "Bakkerij", "MainContact": str(CONTACT)}

    async def get_all(
        self, connection_id, division, resource, field, value, select, changed_before=None
    ):  # type: ignore[no-untyped-def]
        self.calls.append(resource)
        return [{"ID": str(CONTACT), "Account": str(value), "Mobile": "+31612345678"}]


def webhook(topic: str, key: UUID, action: str = "Update") -> ExactWebhookReceived:
    return ExactWebhookReceived(
        connection_id=CONNECTION,
        client_id="c",
        division=DIVISION,
        topic=topic,
        action=action,
        key_id=key,
        endpoint="https://start.exactonline.nl/x",
        event_created_on="2026-11-25",
        received_at=datetime.now(UTC),
    )


async def handle(event: ExactWebhookReceived, exact: CountingExact, cache) -> list:  # type: ignore[no-untyped-def]
    return await handle_exact_event(event, decider=decider(exact, cache), cache=cache)


async def customer(exact: CountingExact, cache) -> Customer:  # type: ignore[no-untyped-def]
    return await Customers(exact, cache).load(CONNECTION, DIVISION, ACCOUNT)


@pytest.mark.parametrize("action", ["Update", "Delete"])
async def test_an_accounts_webhook_drops_the_entry_and_the_next_read_goes_to_exact(cache, action):
    exact = CountingExact()
    await customer(exact, cache)
    await customer(exact, cache)
    assert exact.calls == ["crm/Accounts", "crm/Contacts"]

    assert await handle(webhook("Accounts", ACCOUNT, action), exact, cache) == []
    assert exact.calls == ["crm/Accounts", "crm/Contacts"]  # the webhook itself reads nothing

    await customer(exact, cache)
    assert exact.calls == ["crm/Accounts", "crm/Contacts"] * 2


@pytest.mark.parametrize("action", ["Update", "Delete"])
async def test_a_contacts_webhook_drops_the_entry_of_the_contacts_account(cache, action):
    exact = CountingExact()
    await customer(exact, cache)

    assert await handle(webhook("Contacts", CONTACT, action), exact, cache) == []

    assert cache.invalidated == [("contact", CONTACT)]
    assert (await cache.get(CONNECTION, DIVISION, ACCOUNT)).customer is None
    await customer(exact, cache)
    assert exact.calls == ["crm/Accounts", "crm/Contacts"] * 2


async def test_a_webhook_for_a_contact_never_cached_leaves_other_entries_alone(cache):
    exact = CountingExact()
    await customer(exact, cache)

    assert await handle(webhook("Contacts", uuid4()), exact, cache) == []

    assert (await cache.get(CONNECTION, DIVISION, ACCOUNT)).customer is not None
    assert exact.calls == ["crm/Accounts", "crm/Contacts"]


async def test_a_vanished_account_is_not_cached(cache):
    class Gone(CountingExact):
        async def get_one(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            self.calls.append(args[2])

    exact = Gone()
    assert (await customer(exact, cache)).account is None
    assert (await customer(exact, cache)).account is None
    assert exact.calls == ["crm/Accounts", "crm/Contacts"] * 2


class GatedExact(CountingExact):
    """Reads wait until the test opens the gate, so that callers pile up meanwhile."""

    def __init__(self, error: Exception | None = None) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.error = error

    async def get_one(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return await super().get_one(*args)

    async def get_all(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        await self.gate.wait()
        return await super().get_all(*args)


async def test_concurrent_readers_of_one_customer_share_one_read(cache):
    exact = GatedExact()
    customers = Customers(exact, cache)
    loads = [
        asyncio.create_task(customers.load(CONNECTION, DIVISION, ACCOUNT, contact_person=CONTACT))
        for _ in range(50)
    ]
    for _ in range(10):
        await asyncio.sleep(0)  # a scheduler turn, not a timed wait
    exact.gate.set()
    found = await asyncio.gather(*loads)
    assert exact.calls == ["crm/Accounts", "crm/Contacts"]
    assert all(c == found[0] for c in found)
    assert found[0].has_contact(CONTACT)


async def test_a_failed_shared_read_fails_every_reader_with_its_error(cache):
    exact = GatedExact(error=TransientError("Exact answered 503", code=503))
    customers = Customers(exact, cache)
    loads = [asyncio.create_task(customers.load(CONNECTION, DIVISION, ACCOUNT)) for _ in range(5)]
    for _ in range(10):
        await asyncio.sleep(0)
    exact.gate.set()
    outcomes = await asyncio.gather(*loads, return_exceptions=True)
    assert all(isinstance(o, TransientError) and o.code == 503 for o in outcomes)
    # the next reader starts afresh
    exact.error = None
    assert (await customers.load(CONNECTION, DIVISION, ACCOUNT)).account is not None
