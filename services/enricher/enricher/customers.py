"""Customers (an account and its contacts) for documents: from the cache, else from Exact.

An invoicing run asks for the same few customers hundreds of times within seconds, so
``Customers.load`` is shared: while one read of a customer is under way (cache lookup, Exact
reads, cache fill) every other caller for that customer waits for its answer instead of
starting another. Exact fires ``Accounts``/``Contacts`` webhooks on every change and the
enricher drops the cached entry on each (see ``handlers``). A Contacts webhook for a contact
the cache has never seen (a new contact) cannot name its account, so an entry is also read
again when the document's own contact person is not among its contacts; anything else new
shows up when the entry's TTL runs out.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID

from enricher.audience import CONTACT_FIELDS
from enricher.ports import Customer, CustomerCache, ExactReader

__all__ = ["ACCOUNT_FIELDS", "Customers"]

ACCOUNT_FIELDS = [
    "ID",
    "Name",
    "MainContact",
    "Country",
    "Language",
    "InvoicingMethod",
    "IsAnonymised",
    "Classification1",
]

#: (connection, division, account)
_Key = tuple[str, int, UUID]
#: ``changed_before`` of an entry no webhook dropped: any read within the reader's age will do
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


class Customers:
    def __init__(self, exact: ExactReader, cache: CustomerCache) -> None:
        self._exact = exact
        self._cache = cache
        self._in_flight: dict[_Key, asyncio.Task[tuple[Customer, bool]]] = {}

    async def load(
        self,
        connection_id: str,
        division: int,
        account_id: UUID,
        *,
        contact_person: UUID | None = None,
    ) -> Customer:
        """The account ``account_id`` and its contacts. Cached entries count while fresh; a
        read from Exact is cached unless the account is gone."""
        key = (connection_id, division, account_id)
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(key))
            self._in_flight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        # shield: one caller giving up must not cancel the read the others wait for
        customer, cached = await asyncio.shield(task)
        if cached and contact_person is not None and not customer.has_contact(contact_person):
            # the document names a contact the entry lacks: new since, so read as of now
            generation = (await self._cache.get(*key)).generation
            customer = await self._read(key, generation, None)
        return customer

    def _forget(self, key: _Key, done: asyncio.Task[tuple[Customer, bool]]) -> None:
        if self._in_flight.get(key) is done:
            del self._in_flight[key]
        if not done.cancelled():
            done.exception()  # seen by the callers; never "never retrieved"

    async def _load(self, key: _Key) -> tuple[Customer, bool]:
        """(customer, True when it came from the cache)."""
        lookup = await self._cache.get(*key)
        if lookup.customer is not None:
            return lookup.customer, True
        since = lookup.invalidated_at or _NEVER
        return await self._read(key, lookup.generation, since), False

    async def _read(self, key: _Key, generation: int, changed_before: datetime | None) -> Customer:
        """Read from Exact and cache, unless invalidated since ``generation`` (taken before the
        read, so that a change during the read is never overwritten by what it read). The
        read reflects every change made before ``changed_before`` (the webhook that dropped
        the entry; None: now)."""
        connection_id, division, account_id = key
        account, contacts = await asyncio.gather(
            self._exact.get_one(
                connection_id,
                division,
                "crm/Accounts",
                "ID",
                account_id,
                ACCOUNT_FIELDS,
                changed_before=changed_before,
            ),
            self._exact.get_all(
                connection_id,
                division,
                "crm/Contacts",
                "Account",
                account_id,
                CONTACT_FIELDS,
                changed_before=changed_before,
            ),
        )
        customer = Customer(account, contacts)
        if account is not None:
            await self._cache.put(*key, customer, generation=generation)
        return customer
