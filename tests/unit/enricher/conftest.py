"""Fakes of the enricher's ports, shared by its unit tests."""

from __future__ import annotations

from uuid import UUID

import pytest

from enricher.ports import CacheLookup, Customer

Key = tuple[str, int, UUID]


class FakeCustomerCache:
    """A CustomerCache in memory, with the same generation rule as the Postgres one."""

    def __init__(self) -> None:
        self.entries: dict[Key, Customer] = {}
        self.generations: dict[Key, int] = {}
        self.contact_accounts: dict[tuple[str, int, UUID], UUID] = {}
        self.invalidated: list[tuple[str, UUID]] = []

    async def get(self, connection_id: str, division: int, account_id: UUID) -> CacheLookup:
        key = (connection_id, division, account_id)
        return CacheLookup(self.entries.get(key), self.generations.get(key, 0))

    async def put(self, connection_id, division, account_id, customer, *, generation):  # type: ignore[no-untyped-def]
        key = (connection_id, division, account_id)
        if self.generations.get(key, 0) != generation:
            return False
        self.entries[key] = customer
        for contact in customer.contacts:
            self.contact_accounts[(connection_id, division, UUID(contact["ID"]))] = account_id
        return True

    async def invalidate_account(self, connection_id, division, account_id):  # type: ignore[no-untyped-def]
        self.invalidated.append(("account", account_id))
        self._drop((connection_id, division, account_id))

    async def invalidate_contact(self, connection_id, division, contact_id):  # type: ignore[no-untyped-def]
        self.invalidated.append(("contact", contact_id))
        account_id = self.contact_accounts.get((connection_id, division, contact_id))
        if account_id is not None:
            self._drop((connection_id, division, account_id))
        return account_id

    def _drop(self, key: Key) -> None:
        self.entries.pop(key, None)
        self.generations[key] = self.generations.get(key, 0) + 1
        self.contact_accounts = {
            contact: account
            for contact, account in self.contact_accounts.items()
            if (contact[0], contact[1], account) != key
        }


@pytest.fixture
def cache() -> FakeCustomerCache:
    return FakeCustomerCache()
