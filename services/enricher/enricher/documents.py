"""The Exact documents the enricher reacts to, and the business facts each can represent.

Exact fires ``Update`` on every edit and on creation; a fact is a state of the document, so
every later update of a document in that state maps to the same fact (and idempotency key)::

    entity            party     fact                when (reference exact-online.md section 6)
    SalesInvoices     customer  invoice_issued      Status 50 (processed), Type 8020/8023
    SalesEntries      customer  invoice_issued      Status 20/50 (booked), Type 20
    SalesOrders       customer  order_confirmed     ApprovalStatus 1/2, Status not 45 (cancelled)
    PurchaseOrders    supplier  order_placed        ApprovalStatus 1/2, OrderStatus not 40
    PurchaseInvoices  supplier  invoice_received    Status 20/50, Type 8030/8033
    PurchaseEntries   supplier  invoice_received    Status 20/50, Type 30
    Receivables       customer  payment_received    IsFullyPaid (found by reconciliation)

A sales entry is booked directly in a journal: it is final once it exists (20), unlike a sales
invoice, which is a draft until processed. Credit notes (8021/8024, 21, 8031/8034, 31) are no
fact: nobody is told about them, but they end the reminders of the invoice they settle, since
every reminder checks the receivable right before it is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal
from uuid import UUID

from enricher.ports import Record

__all__ = [
    "KINDS",
    "TOPIC_KINDS",
    "DocumentKind",
    "Party",
    "exact_date",
    "exact_datetime",
    "exact_day_start",
    "guid",
]

Party = Literal["customer", "supplier"]
Fact = Callable[[Record], bool]


def guid(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


def exact_datetime(value: object) -> datetime | None:
    """``/Date(1732492800000)/`` -> an aware UTC datetime, else None."""
    text = str(value or "")
    if text.startswith("/Date(") and text.endswith(")/"):
        try:
            return datetime.fromtimestamp(int(text[6:-2].split("+")[0]) / 1000, UTC)
        except ValueError:
            return None
    return None


def exact_day_start(value: object) -> datetime | None:
    """Where a date field's day starts, as an aware UTC datetime; else None.

    Exact sends a date as ``/Date(ms)/`` at midnight, but whose midnight is not settled: its
    knowledge base says the values are the company's local (CET) wall time written as if UTC
    (a due date of 27 March is ``2026-03-27T00:00Z``); a client that reads them as true
    instants sees local midnight, ``2026-03-26T23:00Z`` (22:00Z in summer). Taking the UTC
    date of the instant would make the second form a day early. So a value on a whole hour
    is a day: the nearest UTC midnight, the intended day under both readings for any zone
    within 12 hours of UTC. A value with minutes or seconds is an instant and stays one.
    """
    moment = exact_datetime(value)
    if moment is None:
        return None
    if moment.minute or moment.second or moment.microsecond:
        return moment
    day = (moment + timedelta(hours=12)).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def exact_date(value: object) -> date | None:
    """The calendar day of a date field (``DueDate``, ``InvoiceDate``...), else None
    (``exact_day_start``: the same day whichever midnight Exact wrote)."""
    start = exact_day_start(value)
    return None if start is None else start.date()


def _in(name: str, *values: object) -> Fact:
    return lambda doc: doc.get(name) in values


def _all(*checks: Fact) -> Fact:
    return lambda doc: all(check(doc) for check in checks)


def _not(name: str, *values: object) -> Fact:
    return lambda doc: doc.get(name) not in values


@dataclass(frozen=True)
class DocumentKind:
    """Where a document lives in Exact and which of its fields mean what to a notice."""

    entity: str
    resource: str
    key: str
    party: Party
    #: The account the notice goes to (customer or supplier).
    account_field: str
    #: The document's own contact person, when the document names one.
    contact_field: str | None
    number_fields: tuple[str, ...]
    amount_field: str
    currency_field: str
    journal_field: str | None
    #: Date fields a rule's timing may name (``DueDate + 3 days``).
    date_fields: tuple[str, ...]
    facts: Mapping[str, Fact]
    extra_fields: tuple[str, ...] = field(default=())

    @property
    def select(self) -> list[str]:
        names = [
            self.key,
            self.account_field,
            *([self.contact_field] if self.contact_field else []),
            *self.number_fields,
            self.amount_field,
            self.currency_field,
            *([self.journal_field] if self.journal_field else []),
            *self.date_fields,
            *self.extra_fields,
        ]
        return list(dict.fromkeys(names))

    def facts_of(self, doc: Record) -> list[str]:
        """The business facts the document's current state represents."""
        return [name for name, holds in self.facts.items() if holds(doc)]

    def number(self, doc: Record) -> str | None:
        for name in self.number_fields:
            if doc.get(name) not in (None, ""):
                return str(doc[name]).strip()
        return None

    def amount(self, doc: Record) -> Decimal:
        try:
            return Decimal(str(doc.get(self.amount_field) or 0))
        except InvalidOperation:
            return Decimal(0)

    def account(self, doc: Record) -> UUID | None:
        return guid(doc.get(self.account_field))

    def contact(self, doc: Record) -> UUID | None:
        return guid(doc.get(self.contact_field)) if self.contact_field else None


_KINDS = (
    DocumentKind(
        entity="SalesInvoices",
        resource="salesinvoice/SalesInvoices",
        key="InvoiceID",
        party="customer",
        account_field="InvoiceTo",
        contact_field="InvoiceToContactPerson",
        number_fields=("InvoiceNumber",),
        amount_field="AmountFC",
        currency_field="Currency",
        journal_field="Journal",
        date_fields=("DueDate", "InvoiceDate"),
        facts={"invoice_issued": _all(_in("Status", 50), _in("Type", 8020, 8023))},
        extra_fields=("Status", "Type", "YourRef"),
    ),
    DocumentKind(
        entity="SalesEntries",
        resource="salesentry/SalesEntries",
        key="EntryID",
        party="customer",
        account_field="Customer",
        contact_field=None,
        number_fields=("InvoiceNumber", "EntryNumber"),
        amount_field="AmountFC",
        currency_field="Currency",
        journal_field="Journal",
        date_fields=("DueDate", "EntryDate"),
        facts={"invoice_issued": _all(_in("Status", 20, 50), _in("Type", 20))},
        extra_fields=("Status", "Type", "YourRef"),
    ),
    DocumentKind(
        entity="SalesOrders",
        resource="salesorder/SalesOrders",
        key="OrderID",
        party="customer",
        account_field="OrderedBy",
        contact_field="OrderedByContactPerson",
        number_fields=("OrderNumber",),
        amount_field="AmountFC",
        currency_field="Currency",
        journal_field=None,
        date_fields=("OrderDate", "DeliveryDate"),
        facts={"order_confirmed": _all(_in("ApprovalStatus", 1, 2), _not("Status", 45))},
        extra_fields=("Status", "ApprovalStatus", "YourRef"),
    ),
    DocumentKind(
        entity="PurchaseOrders",
        resource="purchaseorder/PurchaseOrders",
        key="PurchaseOrderID",
        party="supplier",
        account_field="Supplier",
        contact_field="SupplierContact",
        number_fields=("OrderNumber",),
        amount_field="AmountFC",
        currency_field="Currency",
        journal_field=None,
        date_fields=("OrderDate", "ReceiptDate"),
        facts={"order_placed": _all(_in("ApprovalStatus", 1, 2), _not("OrderStatus", 40))},
        extra_fields=("OrderStatus", "ApprovalStatus", "YourRef"),
    ),
    DocumentKind(
        entity="PurchaseInvoices",
        resource="purchase/PurchaseInvoices",
        key="ID",
        party="supplier",
        account_field="Supplier",
        contact_field="ContactPerson",
        number_fields=("YourRef", "EntryNumber"),
        amount_field="Amount",
        currency_field="Currency",
        journal_field="Journal",
        date_fields=("DueDate", "InvoiceDate"),
        facts={"invoice_received": _all(_in("Status", 20, 50), _in("Type", 8030, 8033))},
        extra_fields=("Status", "Type"),
    ),
    DocumentKind(
        entity="PurchaseEntries",
        resource="purchaseentry/PurchaseEntries",
        key="EntryID",
        party="supplier",
        account_field="Supplier",
        contact_field=None,
        number_fields=("YourRef", "InvoiceNumber", "EntryNumber"),
        amount_field="AmountFC",
        currency_field="Currency",
        journal_field="Journal",
        date_fields=("DueDate", "EntryDate"),
        facts={"invoice_received": _all(_in("Status", 20, 50), _in("Type", 30))},
        extra_fields=("Status", "Type"),
    ),
    DocumentKind(
        entity="Receivables",
        resource="cashflow/Receivables",
        key="ID",
        party="customer",
        account_field="Account",
        contact_field="AccountContact",
        number_fields=("InvoiceNumber",),
        amount_field="AmountFC",
        currency_field="Currency",
        journal_field=None,
        date_fields=("DueDate", "InvoiceDate", "LastPaymentDate"),
        facts={"payment_received": _in("IsFullyPaid", True)},
        extra_fields=("IsFullyPaid", "TransactionEntryID", "YourRef"),
    ),
)

#: Entity name -> kind.
KINDS: Mapping[str, DocumentKind] = {kind.entity: kind for kind in _KINDS}
#: Webhook topic (lower case) -> kind; Receivables has no topic (reference section 1.5).
TOPIC_KINDS: Mapping[str, DocumentKind] = {
    kind.entity.lower(): kind for kind in _KINDS if kind.entity != "Receivables"
}
