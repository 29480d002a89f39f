"""Catch-up: find what webhooks missed by reading what changed, and payments, which have none.

Webhooks get lost (downtime, a dropped subscription). Per connection and division, a periodic
pass reads what changed in each stream since its mark and feeds it into the same pipeline as
``exact.<topic>.update`` events marked ``source="reconciliation"``; the idempotency key makes
overlap with webhooks harmless. Payments are found on ``cashflow/Receivables``
(``IsFullyPaid``) and published as ``exact.payment.received``.

Two kinds of mark (``Mark``), per stream::

    sales invoices, sales orders,   sync API (reference 5.5): Timestamp gt <cursor>, 1,000 rows
    purchase orders                 a page; the cursor is the highest row version read. A first
                                    read starts at SyncTimestamp(<since>): the stream's Modified
                                    mark if it had one, else ``lookback`` ago.
    sales entries, purchase         $filter=Modified gt datetime'<mark - overlap>' (no sync API
    invoices and entries, payments  in the reference or the simulator)

A row version is exact (it only grows, it has no time zone, and ``gt`` repeats nothing), so a
quiet stream costs one request and finds nothing. A sync API Exact refuses (4xx: not in the
app's scope, say) is read by ``Modified`` for the rest of the process, from the newest
``Modified`` the sync rows carried.

Marks advance only after the events are published (the caller commits them), so a crash
repeats a window rather than skipping one; a ``Modified`` read starts a little before its mark
(``overlap``) because ``Modified`` is stamped by Exact's clock, not ours.

Times (docs/exact-dates.md): a ``Modified`` value is kept exactly as Exact wrote it and sent
back in the same form (``datetime'…'`` without an offset, the digits of its ``/Date(ms)/``
read as UTC), so the watermark never converts between zones. If Exact writes the company's
wall time, as its knowledge base says, then the hour the clocks go back (02:00-03:00 on the
last Sunday of October in Europe/Amsterdam) happens twice, and a change in the second one is
stamped earlier than changes already read in the first: a watermark in that hour reads from
its start again, so no change is skipped.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

import structlog

from common.contracts import ExactWebhookReceived, Message, PaymentReceived
from common.errors import MlcError, PermanentError
from enricher.ports import Record
from enricher.sync import SYNC_APIS, SyncSource, first_cursor, highest_timestamp

__all__ = [
    "STREAMS",
    "SYNCED",
    "ChangeReader",
    "FilteredReader",
    "Mark",
    "Pass",
    "Reconciler",
    "reconcile",
]

log = structlog.get_logger("enricher")

#: stream -> (resource, key field, topic of the events it feeds; None for payments)
STREAMS: dict[str, tuple[str, str, str | None]] = {
    "SalesInvoices": ("salesinvoice/SalesInvoices", "InvoiceID", "SalesInvoices"),
    "SalesEntries": ("salesentry/SalesEntries", "EntryID", "SalesEntries"),
    "SalesOrders": ("salesorder/SalesOrders", "OrderID", "SalesOrders"),
    "PurchaseOrders": ("purchaseorder/PurchaseOrders", "PurchaseOrderID", "PurchaseOrders"),
    "PurchaseInvoices": ("purchase/PurchaseInvoices", "ID", "PurchaseInvoices"),
    "PurchaseEntries": ("purchaseentry/PurchaseEntries", "EntryID", "PurchaseEntries"),
    "Payments": ("cashflow/Receivables", "ID", None),
}
#: streams read through a sync API (the rest, and payments, by ``Modified``)
SYNCED: frozenset[str] = frozenset(
    stream
    for stream, (resource, _, topic) in STREAMS.items()
    if topic is not None and resource in SYNC_APIS
)
_PAYMENT_FIELDS = [
    "ID",
    "TransactionEntryID",
    "InvoiceNumber",
    "AmountDC",
    "Currency",
    "LastPaymentDate",
    "Modified",
]
_DATE = re.compile(r"/Date\((-?\d+)\)/")


class FilteredReader(Protocol):
    async def get_filtered(
        self, connection_id: str, division: int, resource: str, filter_: str, select: list[str]
    ) -> list[Record]:
        """Every record matching an OData ``$filter`` (all pages)."""
        ...


class ChangeReader(FilteredReader, SyncSource, Protocol):
    """What reconciliation asks Exact (``ExactClient``): filtered reads and sync APIs."""


@dataclass(frozen=True)
class Mark:
    """How far a stream has been read: ``timestamp``, the highest row version read from its
    sync API (None before the first row), and ``modified``, the newest ``Modified`` read (or
    where the first read started), which a ``Modified`` read goes on from."""

    modified: datetime | None = None
    timestamp: int | None = None


@dataclass(frozen=True)
class Pass:
    """What one reconciliation pass found: events to publish, then watermarks to commit."""

    messages: Sequence[Message]
    watermarks: dict[str, Mark]


def _when(value: object) -> datetime | None:
    match = _DATE.fullmatch(str(value or ""))
    return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC) if match else None


def _literal(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("datetime'%Y-%m-%dT%H:%M:%S'")


def repeated_hour_start(mark: datetime, time_zone: str) -> datetime | None:
    """When ``mark`` (wall-clock digits of ``time_zone`` written as UTC, Exact's form) falls
    in an hour the zone's clocks repeat, the start of that hour in the same form, else None."""
    zone = ZoneInfo(time_zone)

    def repeated(wall: datetime) -> bool:
        # the earlier reading of a repeated wall time has the larger offset (CEST before CET);
        # in the hour skipped in spring it is the other way round
        first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
        return (first.utcoffset() or timedelta(0)) > (second.utcoffset() or timedelta(0))

    wall = mark.astimezone(UTC).replace(tzinfo=None, second=0, microsecond=0)
    if not repeated(wall):
        return None
    while repeated(wall - timedelta(minutes=1)):
        wall -= timedelta(minutes=1)
    return wall.replace(tzinfo=UTC)


async def reconcile(
    connection_id: str,
    division: int,
    client_id: str,
    *,
    exact: ChangeReader,
    watermarks: dict[str, Mark],
    now: datetime,
    lookback: timedelta,
    overlap: timedelta,
    time_zone: str = "Europe/Amsterdam",
    refused: set[str] | None = None,
) -> Pass:
    """One pass over every stream; ``watermarks`` holds the last committed ones (a stream
    without one starts ``lookback`` ago). ``refused`` names the streams whose sync API Exact
    refused (read by ``Modified`` instead); a refusal in this pass is added to it."""
    refused = set() if refused is None else refused
    messages: list[Message] = []
    advanced: dict[str, Mark] = {}
    for stream, (resource, key_field, topic) in STREAMS.items():
        last = watermarks.get(stream) or Mark()
        mark = last.modified or now - lookback
        since = min(mark, repeated_hour_start(mark, time_zone) or mark) - overlap
        if topic is not None and stream in SYNCED and stream not in refused:
            try:
                rows, advanced[stream] = await _synced(
                    exact, connection_id, division, resource, key_field, last, mark, since
                )
            except PermanentError as exc:
                refused.add(stream)
                log.warning(
                    "exact_sync_refused",
                    connection_id=connection_id,
                    division=division,
                    feed=SYNC_APIS[resource][0],
                    error_code=exc.code,
                )
            else:
                messages += _updates(
                    connection_id, division, client_id, resource, key_field, topic, rows, now
                )
                continue
        modified = f"Modified gt {_literal(since)}"
        if topic is None:
            rows = await exact.get_filtered(
                connection_id,
                division,
                resource,
                f"IsFullyPaid eq true and {modified}",
                _PAYMENT_FIELDS,
            )
        else:
            rows = await exact.get_filtered(
                connection_id, division, resource, modified, [key_field, "Modified"]
            )
        # $filter's datetime literal has whole seconds: drop what it let through early
        rows = [r for r in rows if not ((changed := _when(r.get("Modified"))) and changed <= since)]
        newest = _newest(rows, last.modified)
        if topic is None:
            messages += [_payment(connection_id, division, row) for row in rows]
        else:
            messages += _updates(
                connection_id, division, client_id, resource, key_field, topic, rows, now
            )
        advanced[stream] = Mark(newest or mark, last.timestamp)
    return Pass(messages, advanced)


async def _synced(
    exact: ChangeReader,
    connection_id: str,
    division: int,
    resource: str,
    key_field: str,
    last: Mark,
    mark: datetime,
    since: datetime,
) -> tuple[list[Record], Mark]:
    """The rows of ``resource``'s sync API changed after the stream's cursor (one per
    document), and the stream's mark after them."""
    path, endpoint = SYNC_APIS[resource]
    after = last.timestamp
    if after is None:
        after = await first_cursor(exact, connection_id, division, endpoint, since)
        if after is None:  # nothing modified since: ask again next time, from the same start
            return [], Mark(mark, None)
    rows = await exact.get_sync(
        connection_id, division, path, after, [key_field, "Modified", "Timestamp"]
    )
    # Exact's sync feeds may carry a row per document line beside the header, all with the
    # document's key: one event per document, stamped with its newest Modified.
    documents: dict[object, Record] = {}
    for row in rows:
        key = row.get(key_field)
        held = documents.get(key)
        if held is None or (_when(row.get("Modified")) or mark) > (
            _when(held.get("Modified")) or mark
        ):
            documents[key] = row
    return list(documents.values()), Mark(
        _newest(rows, last.modified) or mark, highest_timestamp(rows, after)
    )


def _newest(rows: Sequence[Record], newest: datetime | None) -> datetime | None:
    for row in rows:
        changed = _when(row.get("Modified"))
        if changed and (newest is None or changed > newest):
            newest = changed
    return newest


def _stamp(moment: datetime) -> str:
    """``EventCreatedOn``'s form (milliseconds, no offset): part of the event's message id."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


def _updates(
    connection_id: str,
    division: int,
    client_id: str,
    resource: str,
    key_field: str,
    topic: str,
    rows: Sequence[Record],
    now: datetime,
) -> list[Message]:
    return [
        ExactWebhookReceived(
            connection_id=connection_id,
            client_id=client_id,
            division=division,
            topic=topic,
            action="Update",
            key_id=UUID(str(row[key_field])),
            endpoint=resource,
            event_created_on=_stamp(_when(row.get("Modified")) or now),
            received_at=now,
            source="reconciliation",
        )
        for row in rows
    ]


def _payment(connection_id: str, division: int, row: Record) -> PaymentReceived:
    entry = row.get("TransactionEntryID")
    number = row.get("InvoiceNumber")
    return PaymentReceived(
        connection_id=connection_id,
        division=division,
        receivable_id=UUID(str(row["ID"])),
        invoice_id=UUID(str(entry)) if entry else None,
        invoice_number=str(number) if number is not None else None,
        amount=row.get("AmountDC"),
        currency=row.get("Currency"),
        paid_at=_when(row.get("LastPaymentDate")),
    )


class Watermarks(Protocol):
    def exclusive(self, connection_id: str, division: int) -> AbstractAsyncContextManager[bool]:
        """True inside the block when this replica may run the division's pass."""
        ...

    async def load(self, connection_id: str, division: int) -> dict[str, Mark]: ...

    async def commit(self, connection_id: str, division: int, marks: dict[str, Mark]) -> None: ...


class Publish(Protocol):
    async def __call__(self, message: Message) -> None: ...


class ConnectionSource(Protocol):
    async def active(self) -> list[tuple[str, list[int]]]:
        """The connections to reconcile, each with the divisions it serves (token-keeper's
        ``connections.list``: only connections that work)."""
        ...


@dataclass
class Reconciler:
    """Runs ``reconcile`` on a schedule for each connection token-keeper knows to work, and
    each of its divisions."""

    connections: ConnectionSource
    client_id: str
    exact: ChangeReader
    watermarks: Watermarks
    publish: Publish
    lookback: timedelta
    overlap: timedelta
    #: message id -> when this process published it. Each pass reads ``overlap`` back from
    #: the watermark, so an unchanged record near it would be published again on every pass
    #: of a quiet division; a record published within ``overlap`` plus a margin is not. After
    #: a restart (or on another replica) one window repeats, which the idempotency keys make
    #: harmless.
    _recent: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    #: (connection, division) -> streams whose sync API Exact refused: read by ``Modified``
    #: for the rest of the process, so a refusal is not repeated (and counted) every pass
    _refused: dict[tuple[str, int], set[str]] = field(default_factory=dict, init=False, repr=False)

    def _fresh(self, messages: Sequence[Message]) -> list[Message]:
        now = time.monotonic()
        keep = 2 * self.overlap.total_seconds() + 3600
        self._recent = {k: at for k, at in self._recent.items() if now - at < keep}
        return [m for m in messages if m.message_id() not in self._recent]

    async def run_once(self, now: datetime | None = None) -> int:
        """One pass everywhere; returns the number of messages published."""
        published = 0
        for connection_id, divisions in await self.connections.active():
            for division in divisions:
                try:
                    published += await self._division(connection_id, division, now)
                except MlcError as exc:  # one division's trouble must not stop the others
                    log.warning(
                        "reconcile_failed",
                        connection_id=connection_id,
                        division=division,
                        error_class=exc.error_class,
                    )
        return published

    async def _division(self, connection_id: str, division: int, now: datetime | None) -> int:
        async with self.watermarks.exclusive(connection_id, division) as mine:
            if not mine:
                return 0
            found = await reconcile(
                connection_id,
                division,
                self.client_id,
                exact=self.exact,
                watermarks=await self.watermarks.load(connection_id, division),
                now=now or datetime.now(UTC),
                lookback=self.lookback,
                overlap=self.overlap,
                refused=self._refused.setdefault((connection_id, division), set()),
            )
            fresh = self._fresh(found.messages)
            for message in fresh:
                await self.publish(message)
                self._recent[message.message_id()] = time.monotonic()
            await self.watermarks.commit(connection_id, division, dict(found.watermarks))
        if fresh:
            log.info(
                "reconciled",
                connection_id=connection_id,
                division=division,
                messages=len(fresh),
                already_published=len(found.messages) - len(fresh),
            )
        return len(fresh)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.run_once()
