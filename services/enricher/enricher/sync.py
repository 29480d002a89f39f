"""Reads by key served from Exact's sync APIs: a burst costs a call or two, not one per batch.

A monthly invoicing run sends a webhook per invoice, to as many customers. Read by key, that
is a filter of 15 keys per call for the invoices, and again for the accounts and their
contacts. Exact's sync APIs (reference section 5.5) answer 1,000 changed rows a call, in
row-version order (``Timestamp gt N``). ``SyncReader`` is the ``ExactBulkReader`` the batching
reader gets; per connection, division and feed it keeps a table of the rows read so far and
the last row version, and answers a batch from the table once a catch-up has run that started
after the batch's ``changed_before`` (the webhook's arrival, or the cache entry's
invalidation)::

    batch [k1..k60], changed before T ─▶ a catch-up started after T?  ─ no ─▶ read sync feed
                                             │ yes                        since the last row
                                             ▼                            version, into the table
                                   rows of the table ◀───────────────────────┘
                                   keys it lacks ─▶ filtered read by key (partial tables only)

Feeds:

- ``crm/Accounts``, ``crm/Contacts``: full tables, read from row version 1 at first use (a
  company's whole customer list: 1,000 rows a call), then kept current by catch-ups and
  ``sync/Deleted``; a key missing from a full table does not exist. Contacts are also
  answered by ``Account`` (every contact of an account). A division with more rows than
  ``max_rows`` is not mirrored.
- ``salesinvoice/SalesInvoices``: partial, from the row version ``SyncTimestamp`` gives for
  ``lookback`` ago; a key it lacks is read by key. Exact's feed has a row per invoice line
  beside the header; a row is taken as the invoice only when its ``ID`` is the ``InvoiceID``
  (how Exact marks its header row is not documented where we could read it: if it is not
  so, every key is read by key, as before).

A feed Exact refuses (4xx: not in the app's scope, say) is left alone for the rest of the
process, and every read goes by key. Tables live in memory, per process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID

import structlog

from common.errors import PermanentError
from enricher.audience import CONTACT_FIELDS
from enricher.ports import ExactBulkReader, Record

__all__ = [
    "FEEDS",
    "SYNC_APIS",
    "Feed",
    "SyncReader",
    "SyncSource",
    "first_cursor",
    "highest_timestamp",
]

log = structlog.get_logger("enricher")


class SyncSource(Protocol):
    """What the reader asks Exact (``ExactClient``)."""

    async def get_sync(
        self, connection_id: str, division: int, path: str, after: int, select: list[str]
    ) -> list[Record]: ...

    async def sync_start(
        self, connection_id: str, division: int, endpoint: str, modified: datetime
    ) -> int | None: ...


@dataclass(frozen=True)
class Feed:
    """A sync API standing in for reads by key of one resource."""

    path: str
    key: str
    #: Fields read (the union of what the enricher selects of this resource).
    columns: tuple[str, ...]
    #: Other guid fields a read may be by (every contact of an ``Account``).
    by: tuple[str, ...] = ()
    #: Full tables start at row version 1; partial ones at ``SyncTimestamp`` for this name.
    start: str | None = None
    #: ``EntityType`` in ``sync/Deleted`` (full tables drop what it lists).
    deleted_type: int | None = None

    @property
    def full(self) -> bool:
        return self.start is None


_ACCOUNT_COLUMNS = (
    "ID",
    "Name",
    "MainContact",
    "Country",
    "Language",
    "InvoicingMethod",
    "IsAnonymised",
    "Classification1",
)
#: What the enricher reads of a contact (``audience.CONTACT_FIELDS``), and its account, by
#: which the table answers "every contact of an account".
_CONTACT_COLUMNS = ("Account", *CONTACT_FIELDS)
_INVOICE_COLUMNS = (
    "InvoiceID",
    "InvoiceTo",
    "InvoiceToContactPerson",
    "InvoiceNumber",
    "AmountFC",
    "Currency",
    "Journal",
    "DueDate",
    "InvoiceDate",
    "Status",
    "Type",
    "YourRef",
    "ID",
)

#: REST resource -> (its sync API, the ``endPoint`` name ``SyncTimestamp`` knows it by): the
#: sync APIs of reference section 5.5 that the enricher reads (bursts here, catch-up in
#: ``enricher.reconcile``).
SYNC_APIS: dict[str, tuple[str, str]] = {
    "crm/Accounts": ("sync/CRM/Accounts", "Accounts"),
    "crm/Contacts": ("sync/CRM/Contacts", "Contacts"),
    "salesinvoice/SalesInvoices": ("sync/SalesInvoice/SalesInvoices", "SalesInvoices"),
    "salesorder/SalesOrders": ("sync/SalesOrder/SalesOrderHeaders", "SalesOrderHeaders"),
    "purchaseorder/PurchaseOrders": ("sync/PurchaseOrder/PurchaseOrders", "PurchaseOrders"),
}

#: resource -> feed
FEEDS: dict[str, Feed] = {
    "crm/Accounts": Feed(SYNC_APIS["crm/Accounts"][0], "ID", _ACCOUNT_COLUMNS, deleted_type=2),
    "crm/Contacts": Feed(
        SYNC_APIS["crm/Contacts"][0], "ID", _CONTACT_COLUMNS, by=("Account",), deleted_type=5
    ),
    "salesinvoice/SalesInvoices": Feed(
        SYNC_APIS["salesinvoice/SalesInvoices"][0],
        "InvoiceID",
        _INVOICE_COLUMNS,
        start=SYNC_APIS["salesinvoice/SalesInvoices"][1],
    ),
}


async def first_cursor(
    source: SyncSource, connection_id: str, division: int, endpoint: str, since: datetime
) -> int | None:
    """The cursor from which ``Timestamp gt cursor`` reads a sync API (``endpoint``, the
    ``SyncTimestamp`` name) from its first row modified on or after ``since``; None when no
    row was modified since then (nothing to read yet)."""
    first = await source.sync_start(connection_id, division, endpoint, since)
    return first - 1 if first is not None else None


def highest_timestamp(rows: Sequence[Record], after: int) -> int:
    """The highest row version (``Timestamp``) among ``rows``, or ``after`` if none is higher:
    where the next read of the feed starts."""
    for row in rows:
        stamp = row.get("Timestamp")
        if isinstance(stamp, int) and stamp > after:
            after = stamp
    return after


def _guid(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


@dataclass
class _Table:
    feed: Feed
    rows: dict[UUID, Record] = field(default_factory=dict)
    after: int | None = None
    #: wall-clock start of the last catch-up that finished (None: never)
    caught_up_from: datetime | None = None
    running: asyncio.Task[None] | None = None
    disabled: bool = False
    #: field -> its value -> the rows that have it, for reads by another field than the key
    #: (every contact of an account); built on first use, dropped when the rows change
    indexes: dict[str, dict[UUID, list[Record]]] = field(default_factory=dict)

    def having(self, name: str, values: Sequence[UUID]) -> list[Record]:
        """The rows whose ``name`` is one of ``values``: by key straight from ``rows``, by
        another field through its index (a table of thousands of rows answers a batch of
        sixty keys without reading every row)."""
        if name == self.feed.key:
            return [self.rows[key] for key in dict.fromkeys(values) if key in self.rows]
        index = self.indexes.get(name)
        if index is None:
            index = {}
            for row in self.rows.values():
                value = _guid(row.get(name))
                if value is not None:
                    index.setdefault(value, []).append(row)
            self.indexes[name] = index
        return [row for value in dict.fromkeys(values) for row in index.get(value, ())]


class SyncReader:
    """Implements ``ExactBulkReader``; see the module docstring."""

    def __init__(
        self,
        source: SyncSource,
        fallback: ExactBulkReader,
        *,
        lookback: timedelta = timedelta(hours=1),
        max_age: timedelta = timedelta(minutes=5),
        max_rows: int = 100_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._source = source
        self._fallback = fallback
        self._lookback = lookback
        self._max_age = max_age
        self._max_rows = max_rows
        self._clock = clock
        self._tables: dict[tuple[str, int, str], _Table] = {}

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
        feed = FEEDS.get(resource)
        usable = (
            feed is not None
            and (field == feed.key or field in feed.by)
            and set(select) <= set(feed.columns)
        )
        if feed is None or not usable:
            return await self._by_key(
                connection_id, division, resource, field, values, select, changed_before
            )
        table = self._tables.setdefault((connection_id, division, resource), _Table(feed))
        if not table.disabled:
            await self._current(connection_id, division, table, changed_before)
        if table.disabled:
            return await self._by_key(
                connection_id, division, resource, field, values, select, changed_before
            )
        rows = table.having(field, values)
        if feed.full or field != feed.key:
            return rows
        missing = set(values) - {_guid(row.get(field)) for row in rows}
        if missing:
            rows += await self._by_key(
                connection_id, division, resource, field, sorted(missing), select, None
            )
        return rows

    async def _by_key(
        self,
        connection_id: str,
        division: int,
        resource: str,
        field: str,
        values: Sequence[UUID],
        select: list[str],
        changed_before: datetime | None,
    ) -> list[Record]:
        return await self._fallback.get_where_in(
            connection_id, division, resource, field, values, select, changed_before=changed_before
        )

    async def _current(
        self, connection_id: str, division: int, table: _Table, changed_before: datetime | None
    ) -> None:
        """Return once a catch-up that started after ``changed_before`` (and within
        ``max_age``) has finished; catch-ups of a table run one at a time.

        Never one later than a catch-up that starts now: whoever asks has seen the change's
        notice already (``BatchingExactReader`` stamps each load with the moment it was
        asked at the latest), so one started now reads it."""
        now = self._clock()
        asked = changed_before if changed_before is not None else now
        need = min(max(asked, now - self._max_age), now)
        while not table.disabled:
            if table.caught_up_from is not None and table.caught_up_from >= need:
                return
            running = table.running
            # A finished catch-up can still be table.running: its done callbacks (_finished)
            # run in a later loop turn than a caller woken in the turn it finished. Awaiting
            # a finished task never yields, so waiting on it again would spin this loop
            # forever without letting the callback run: start the next catch-up instead.
            if running is None or running.done():
                running = asyncio.get_running_loop().create_task(
                    self._catch_up(connection_id, division, table, self._clock())
                )
                table.running = running
                running.add_done_callback(lambda done: self._finished(table, done))
            # a catch-up that started too early is waited for all the same: one at a time
            await asyncio.shield(running)

    @staticmethod
    def _finished(table: _Table, done: asyncio.Task[None]) -> None:
        if table.running is done:
            table.running = None
        if not done.cancelled():
            done.exception()  # seen by the callers; never "never retrieved"

    async def _catch_up(
        self, connection_id: str, division: int, table: _Table, started: datetime
    ) -> None:
        feed = table.feed
        began = time.monotonic()
        try:
            if table.after is None:
                if feed.start is not None:
                    table.after = await first_cursor(
                        self._source, connection_id, division, feed.start, started - self._lookback
                    )
                else:
                    table.after = 1
            if table.after is None:  # nothing modified within the lookback: nothing to keep
                table.caught_up_from = started
                return
            columns = [*feed.columns, "Timestamp"]
            rows = await self._source.get_sync(
                connection_id, division, feed.path, table.after, columns
            )
            if feed.deleted_type is not None and table.rows:
                for gone in await self._source.get_sync(
                    connection_id,
                    division,
                    "sync/Deleted",
                    table.after,
                    ["EntityKey", "EntityType", "Timestamp"],
                ):
                    if gone.get("EntityType") == feed.deleted_type:
                        table.rows.pop(_guid(gone.get("EntityKey")) or UUID(int=0), None)
        except PermanentError as exc:
            table.disabled = True
            table.rows.clear()
            table.indexes.clear()
            log.warning("exact_sync_refused", feed=feed.path, error_code=exc.code)
            return
        table.after = highest_timestamp(rows, table.after or 0)
        for row in rows:
            key = _guid(row.get(feed.key))
            if key is None or (feed.key != "ID" and _guid(row.get("ID")) != key):
                continue  # an invoice line: only the header row is the invoice
            table.rows[key] = row
        # no await since the deletions were read: no reader saw the rows half changed
        table.indexes.clear()
        if len(table.rows) > self._max_rows:
            table.rows.clear()
            if feed.full:  # an incomplete full table would answer "gone" for what it lacks
                table.disabled = True
                log.warning("exact_sync_too_large", feed=feed.path, rows=self._max_rows)
                return
        table.caught_up_from = started
        log.debug(
            "exact_sync_caught_up",
            feed=feed.path,
            rows=len(rows),
            seconds=round(time.monotonic() - began, 3),
        )
