"""What the enricher's handlers need: a reader of Exact records, a cache of customers (an
account with its contacts), the token source the Exact adapter uses, the store of notices
(one decision per document and rule), the notices a suppressed address reaches, and the
contacts' channel preferences."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from common.contracts import AccessToken, Channel, Message

__all__ = [
    "AddressedNotice",
    "AddressedNotices",
    "CacheLookup",
    "Customer",
    "CustomerCache",
    "DueNotices",
    "ExactBulkReader",
    "ExactReader",
    "Notice",
    "NoticeKey",
    "NoticeStore",
    "PreferenceStore",
    "Record",
    "TokenSource",
]

#: One Exact record as returned by the API (field name -> value), only the selected fields.
Record = dict[str, Any]


class ExactReader(Protocol):
    """Reads records one key at a time; implementations may coalesce concurrent reads."""

    async def get_one(
        self,
        connection_id: str,
        division: int,
        resource: str,
        key_field: str,
        key: UUID,
        select: list[str],
        *,
        changed_before: datetime | None = None,
    ) -> Record | None:
        """The record whose ``key_field`` is ``key``, or None when it no longer exists; it
        reflects every change made before ``changed_before`` (None: before now)."""
        ...

    async def get_all(
        self,
        connection_id: str,
        division: int,
        resource: str,
        field: str,
        value: UUID,
        select: list[str],
        *,
        changed_before: datetime | None = None,
    ) -> list[Record]:
        """Every record whose guid ``field`` equals ``value`` (all pages), reflecting every
        change made before ``changed_before`` (None: before now)."""
        ...


class ExactBulkReader(Protocol):
    """Reads the records matching any of many guid values with as few requests as it can."""

    async def get_where_in(
        self,
        connection_id: str,
        division: int,
        resource: str,
        field: str,
        values: Sequence[UUID],
        select: list[str],
        *,
        changed_before: datetime | None = None,
    ) -> list[Record]:
        """Every record whose ``field`` is one of ``values`` (all pages, any order), as it
        is after every change made before ``changed_before`` (None: before now)."""
        ...


class TokenSource(Protocol):
    async def get(self, connection_id: str) -> AccessToken:
        """A valid access token of the connection."""
        ...

    async def refresh(self, connection_id: str, fingerprint: str) -> AccessToken:
        """Exact refused the token ``fingerprint``: a newer one."""
        ...


@dataclass(frozen=True)
class Customer:
    """An account and its contacts, as one cache entry."""

    account: Record | None
    contacts: list[Record] = field(default_factory=list)

    def has_contact(self, contact_id: UUID) -> bool:
        return any(str(c.get("ID", "")).lower() == str(contact_id) for c in self.contacts)


@dataclass(frozen=True)
class CacheLookup:
    """A cache answer: the customer when fresh, else None, and the entry's generation.

    ``generation`` goes back into ``put``: every invalidation raises it, so a fill that read
    Exact before an invalidation arrived cannot store what it read.
    """

    customer: Customer | None
    generation: int = 0
    #: When a webhook last dropped the entry (None: never): a read to refill it must
    #: reflect that change.
    invalidated_at: datetime | None = None


class CustomerCache(Protocol):
    async def get(self, connection_id: str, division: int, account_id: UUID) -> CacheLookup:
        """The cached customer if present and younger than the TTL."""
        ...

    async def put(
        self,
        connection_id: str,
        division: int,
        account_id: UUID,
        customer: Customer,
        *,
        generation: int,
    ) -> bool:
        """Store ``customer`` unless invalidated since ``generation``; True when stored."""
        ...

    async def invalidate_account(self, connection_id: str, division: int, account_id: UUID) -> None:
        """Drop the account's entry (an ``Accounts`` webhook)."""
        ...

    async def invalidate_contact(
        self, connection_id: str, division: int, contact_id: UUID
    ) -> UUID | None:
        """Drop the entry of the account the contact is cached under (a ``Contacts`` webhook);
        returns that account, or None when the contact is not cached."""
        ...

    async def forget_contact(self, connection_id: str, contact_id: UUID) -> int:
        """Drop every entry holding the contact, in any division (an erasure); returns how
        many account entries were dropped."""
        ...


@dataclass(frozen=True)
class NoticeKey:
    connection_id: str
    division: int
    entity: str
    document_id: UUID
    rule: str


@dataclass(frozen=True)
class Notice:
    key: NoticeKey
    state: str
    due_at: datetime
    document_number: str | None
    message: Message | None
    detail: str | None


class NoticeStore(Protocol):
    async def get(self, key: NoticeKey) -> Notice | None: ...

    async def of_document(
        self, connection_id: str, division: int, entity: str, document_id: UUID
    ) -> dict[str, Notice]:
        """Every notice of one document, by rule (one read for all of its rules)."""
        ...

    async def record(
        self,
        key: NoticeKey,
        state: str,
        *,
        due_at: datetime,
        number: str | None,
        message: Message | None = None,
        detail: str | None = None,
    ) -> None: ...

    async def cancel_invoice(
        self,
        connection_id: str,
        division: int,
        *,
        entities: Sequence[str],
        document_id: UUID | None,
        number: str | None,
        reason: str,
    ) -> int: ...

    async def cancel_document(
        self, connection_id: str, division: int, entity: str, document_id: UUID, reason: str
    ) -> int: ...


@dataclass(frozen=True)
class AddressedNotice:
    """A pending notice of a document whose notices already sent to one address on one
    channel, and the rules whose notices did (a reminder has no recipient of its own until it
    fires: the chain's earlier steps tell where it would go)."""

    key: NoticeKey
    sent_by: tuple[str, ...]


class AddressedNotices(Protocol):
    async def pending_chains_to(
        self, connection_id: str | None, channel: Channel, address_key: str
    ) -> list[AddressedNotice]:
        """The pending notices of every document (of ``connection_id``; None: of every
        connection) that sent a command on ``channel`` to the address whose
        ``common.contracts.address_key`` is ``address_key``."""
        ...

    async def cancel_pending(self, keys: Sequence[NoticeKey], detail: str) -> list[NoticeKey]:
        """Cancel those of ``keys`` still pending; returns the ones it cancelled."""
        ...


class PreferenceStore(Protocol):
    async def get_many(
        self, connection_id: str, contact_ids: Sequence[UUID]
    ) -> dict[str, Channel]: ...


class DueNotices(Protocol):
    """Pending notices due now, held (locked) until each is settled."""

    notices: list[Notice]

    async def settle(
        self,
        notice: Notice,
        state: str,
        *,
        due_at: datetime | None = None,
        message: Message | None = None,
        detail: str | None = None,
    ) -> None: ...
