"""Catch-up: find what webhooks missed by reading what changed, and payments, which have none.

Webhooks get lost (downtime, a dropped subscription). Per connection and division, a periodic
pass reads records ``Modified`` since the last watermark and feeds them into the same pipeline
as ``exact.<topic>.update`` events marked ``source="reconciliation"``; the idempotency key makes
overlap with webhooks harmless. Payments are found on ``cashflow/Receivables``
(``IsFullyPaid``) and published as ``exact.payment.received``.

Watermarks advance only after the events are published (the caller commits them), so a crash
repeats a window rather than skipping one; each pass reads from a little before the watermark
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
from common.errors import MlcError
from enricher.ports import Record

__all__ = ["STREAMS", "FilteredReader", "Pass", "Reconciler", "reconcile"]

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


@dataclass(frozen=True)
class Pass:
    """What one reconciliation pass found: events to publish, then watermarks to commit."""

    messages: Sequence[Message]
    watermarks: dict[str, datetime]


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
    exact: FilteredReader,
    watermarks: dict[str, datetime | None],
    now: datetime,
    lookback: timedelta,
    overlap: timedelta,
    time_zone: str = "Europe/Amsterdam",
) -> Pass:
    """One pass over every stream; ``watermarks`` holds the last committed ones (or None)."""
    messages: list[Message] = []
    advanced: dict[str, datetime] = {}
    for stream, (resource, key_field, topic) in STREAMS.items():
        mark = watermarks.get(stream) or now - lookback
        since = min(mark, repeated_hour_start(mark, time_zone) or mark) - overlap
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
        newest = watermarks.get(stream)
        for row in rows:
            changed = _when(row.get("Modified"))
            if changed and changed <= since:
                # $filter's datetime literal has whole seconds: drop what it let through early
                continue
            if changed and (newest is None or changed > newest):
                newest = changed
            if topic is None:
                messages.append(_payment(connection_id, division, row))
            else:
                messages.append(
                    ExactWebhookReceived(
                        connection_id=connection_id,
                        client_id=client_id,
                        division=division,
                        topic=topic,
                        action="Update",
                        key_id=UUID(str(row[key_field])),
                        endpoint=resource,
                        event_created_on=(changed or now).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
                        received_at=now,
                        source="reconciliation",
                    )
                )
        advanced[stream] = newest or mark
    return Pass(messages, advanced)


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

    async def load(self, connection_id: str, division: int) -> dict[str, datetime | None]: ...

    async def commit(
        self, connection_id: str, division: int, marks: dict[str, datetime]
    ) -> None: ...


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
    exact: FilteredReader
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
