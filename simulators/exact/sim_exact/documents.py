"""What the admin API does to Exact records: defaults, derived names, numbering, issuing.

Records keep the denormalised names Exact returns next to each reference
(``InvoiceTo`` -> ``InvoiceToName``, ``Account`` -> ``AccountName``, ...), recomputed whenever a
reference changes. A contact created as main contact becomes its account's ``MainContact``
(an ``Accounts`` Update as well). A sales invoice moves through::

    create -> Status 10 (draft, no InvoiceNumber) --edit*--> issue -> Status 50 (processed,
    InvoiceNumber assigned, e.g. 26000001) ; delete at any point -> Delete webhook
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sim_exact.clock import Clock
from sim_exact.entities import (
    ACCOUNTS,
    CONTACTS,
    PURCHASE_ENTRIES,
    PURCHASE_INVOICES,
    PURCHASE_ORDERS,
    RECEIVABLES,
    SALES_ENTRIES,
    SALES_INVOICES,
    SALES_ORDERS,
    EntitySet,
)
from sim_exact.store import Row, Store

__all__ = ["INVOICE_STATUS", "Documents", "NotFound"]

#: Sales invoice status -> StatusDescription.
INVOICE_STATUS = {10: "Draft", 20: "Open", 50: "Processed"}

#: reference field -> (name field, referenced set, field copied from the referenced record)
_DERIVED: Mapping[str, tuple[tuple[str, str, EntitySet, str], ...]] = {
    SALES_INVOICES.name: (
        ("InvoiceTo", "InvoiceToName", ACCOUNTS, "Name"),
        ("OrderedBy", "OrderedByName", ACCOUNTS, "Name"),
        ("InvoiceToContactPerson", "InvoiceToContactPersonFullName", CONTACTS, "FullName"),
    ),
    CONTACTS.name: (("Account", "AccountName", ACCOUNTS, "Name"),),
    SALES_ORDERS.name: (
        ("OrderedBy", "OrderedByName", ACCOUNTS, "Name"),
        ("InvoiceTo", "InvoiceToName", ACCOUNTS, "Name"),
        ("DeliverTo", "DeliverToName", ACCOUNTS, "Name"),
        ("OrderedByContactPerson", "OrderedByContactPersonFullName", CONTACTS, "FullName"),
    ),
    SALES_ENTRIES.name: (("Customer", "CustomerName", ACCOUNTS, "Name"),),
    PURCHASE_ENTRIES.name: (("Supplier", "SupplierName", ACCOUNTS, "Name"),),
    PURCHASE_ORDERS.name: (
        ("Supplier", "SupplierName", ACCOUNTS, "Name"),
        ("Supplier", "SupplierCode", ACCOUNTS, "Code"),
        ("SupplierContact", "SupplierContactPersonFullName", CONTACTS, "FullName"),
    ),
}

_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    ACCOUNTS.name: {
        "IsSales": True,
        "IsSupplier": False,
        "Status": "C",
        "Blocked": False,
        "IsAnonymised": False,
    },
    SALES_ENTRIES.name: {"Currency": "EUR", "Status": 20, "Type": 20},
    PURCHASE_INVOICES.name: {"Currency": "EUR", "Status": 20, "Type": 8030},
    PURCHASE_ENTRIES.name: {"Currency": "EUR", "Status": 20, "Type": 30},
    CONTACTS.name: {"IsMainContact": False, "IsMailingExcluded": False, "IsAnonymised": False},
    SALES_ORDERS.name: {
        "Currency": "EUR",
        "Status": 12,
        "DeliveryStatus": 12,
        "InvoiceStatus": 12,
        "ApprovalStatus": 1,
    },
    PURCHASE_ORDERS.name: {
        "Currency": "EUR",
        "OrderStatus": 10,
        "ReceiptStatus": 10,
        "InvoiceStatus": 10,
        "ApprovalStatus": 1,
    },
}


class NotFound(LookupError):
    """The record the admin call names does not exist."""


class Documents:
    """Creates and changes records the way Exact's own screens would."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._counters: dict[tuple[int, str, int], int] = {}

    # generic -------------------------------------------------------------------------------

    def create(self, division: int, entity: EntitySet, fields: Mapping[str, Any]) -> Row:
        """Insert a record with defaults and derived fields; fires ``Update``."""
        values = {**_DEFAULTS.get(entity.name, {}), **fields}
        if entity is ACCOUNTS:
            values["Code"] = self._account_code(division, values.get("Code"))
        if entity is CONTACTS and not values.get("FullName"):
            parts = (values.get("FirstName"), values.get("LastName"))
            values["FullName"] = " ".join(p for p in parts if p) or None
        if entity in (SALES_ORDERS, PURCHASE_ORDERS):
            values.setdefault("OrderNumber", self._next_number(division, entity, 0))
            values.setdefault("OrderDate", self._clock.now_dt())
        self._derive(division, entity, values)
        row = self._store.insert(division, entity, values)
        if entity is CONTACTS and row["IsMainContact"] and row["Account"]:
            self._store.update(division, ACCOUNTS, row["Account"], {"MainContact": row["ID"]})
        return row

    def edit(self, entity: EntitySet, key: Any, fields: Mapping[str, Any]) -> Row:
        """Change fields of a record in whichever division holds it; fires ``Update``."""
        division, _ = self._locate(entity, key)
        values = dict(fields)
        if entity is ACCOUNTS and "Code" in values:
            values["Code"] = self._account_code(division, values["Code"])
        self._derive(division, entity, values)
        return self._store.update(division, entity, key, values)

    def delete(self, entity: EntitySet, key: Any) -> Row:
        """Remove a record; fires ``Delete``."""
        division, _ = self._locate(entity, key)
        return self._store.delete(division, entity, key)

    # sales invoices ------------------------------------------------------------------------

    def create_invoice(
        self,
        division: int,
        *,
        account_id: str,
        amount: float,
        currency: str = "EUR",
        description: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Row:
        """A draft (Status 10) invoice to ``account_id`` and its main contact."""
        account = self._store.get(division, ACCOUNTS, account_id)
        if account is None:
            raise NotFound(f"account {account_id} not found in division {division}")
        today = self._clock.now_dt().replace(hour=0, minute=0, second=0, microsecond=0)
        values: dict[str, Any] = {
            "InvoiceTo": account["ID"],
            "OrderedBy": account["ID"],
            "InvoiceToContactPerson": account["MainContact"],
            "InvoiceDate": today,
            "OrderDate": today,
            "DueDate": today + timedelta(days=14),
            "AmountDC": amount,
            "AmountFC": amount,
            "Currency": currency,
            "Status": 10,
            "StatusDescription": INVOICE_STATUS[10],
            "Type": 8021 if amount < 0 else 8020,
            "Description": description,
            **(extra or {}),
        }
        return self.create(division, SALES_INVOICES, values)

    def issue_invoice(self, key: Any) -> Row:
        """Process (print) a draft: Status 50 and the next InvoiceNumber; fires ``Update``."""
        division, row = self._locate(SALES_INVOICES, key)
        if row["Status"] == 50:
            raise ValueError(f"invoice {key} is already processed")
        year = self._clock.now_dt().year % 100
        number = self._next_number(division, SALES_INVOICES, year * 1_000_000)
        issued = self._store.update(
            division,
            SALES_INVOICES,
            key,
            {
                "Status": 50,
                "StatusDescription": INVOICE_STATUS[50],
                "InvoiceNumber": number,
                "PaymentReference": f"{number:016d}",
            },
        )
        # Booking the invoice opens the customer's receivable (Status 20: open).
        receivable = {
            "Account": issued["InvoiceTo"], "AmountDC": issued["AmountDC"],
            "AmountFC": issued["AmountFC"], "Currency": issued["Currency"],
            "DueDate": issued["DueDate"], "InvoiceDate": issued["InvoiceDate"],
            "InvoiceNumber": number, "YourRef": issued["YourRef"],
            "PaymentReference": issued["PaymentReference"], "Status": 20,
            "IsFullyPaid": False, "TransactionEntryID": issued["InvoiceID"],
            "AccountContact": issued["InvoiceToContactPerson"],
        }  # fmt: skip
        self.create(division, RECEIVABLES, receivable)
        return issued

    def pay_invoice(self, key: Any) -> Row:
        """The customer paid an issued invoice in full: its receivable becomes matched (50)."""
        division, invoice = self._locate(SALES_INVOICES, key)
        for row in self._store.rows(division, RECEIVABLES):
            if row["TransactionEntryID"] == invoice["InvoiceID"]:
                if row["IsFullyPaid"]:
                    raise ValueError(f"invoice {key} is already paid")
                return self._store.update(division, RECEIVABLES, row["ID"], {
                    "IsFullyPaid": True, "Status": 50,
                    "LastPaymentDate": self._clock.now_dt(),
                })  # fmt: skip
        raise ValueError(f"invoice {key} has no receivable: it is not issued")

    # internals -----------------------------------------------------------------------------

    def _locate(self, entity: EntitySet, key: Any) -> tuple[int, Row]:
        found = self._store.find(entity, key)
        if found is None:
            raise NotFound(f"{entity.name} {key} not found")
        return found

    def _next_number(self, division: int, entity: EntitySet, base: int) -> int:
        slot = (division, entity.name, base)
        self._counters[slot] = self._counters.get(slot, 0) + 1
        return base + self._counters[slot]

    def _account_code(self, division: int, code: Any) -> str:
        """Exact's account Code: digits right-aligned in 18 characters."""
        if code is None:
            code = self._next_number(division, ACCOUNTS, 1000)
        return str(code).strip().rjust(18)

    def _derive(self, division: int, entity: EntitySet, values: dict[str, Any]) -> None:
        """Fill the name fields of every reference present in ``values``."""
        for ref, name_field, source, copied in _DERIVED.get(entity.name, ()):
            if ref not in values:
                continue
            referenced = self._store.get(division, source, values[ref]) if values[ref] else None
            values[name_field] = referenced[copied] if referenced else None
