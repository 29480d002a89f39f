"""The entity sets the simulator serves, with Exact's field names and OData types.

Paths are ``/api/v1/{division}/{service}/{Entity}``; a record's own URL appends its key as
``(guid'<key>')`` (or ``(<n>)`` for an integer key). Field types and their JSON form::

    guid      lower-case GUID string          "b9e2c7a4-5d31-..."
    datetime  aware UTC datetime              "/Date(1763629843217)/"
    string    str                             "Bakkerij De Vries B.V."
    int       int (Edm.Int16/32/64)           20
    float     float (Edm.Double)              121.0
    bool      bool                            true
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ACCOUNTS",
    "BY_NAME",
    "BY_PATH",
    "CONTACTS",
    "DIVISIONS",
    "ENTITY_SETS",
    "PURCHASE_ENTRIES",
    "PURCHASE_INVOICES",
    "PURCHASE_ORDERS",
    "RECEIVABLES",
    "SALES_ENTRIES",
    "SALES_INVOICES",
    "SALES_ORDERS",
    "TOPICS",
    "WEBHOOK_SUBSCRIPTIONS",
    "EntitySet",
    "FieldType",
]

FieldType = Literal["guid", "datetime", "string", "int", "float", "bool"]


@dataclass(frozen=True)
class EntitySet:
    """One REST resource: where it lives, its key, its webhook topic and its typed fields."""

    service: str
    name: str
    key: str
    type_name: str
    fields: Mapping[str, FieldType]
    topic: str | None = None

    @property
    def path(self) -> str:
        return f"{self.service}/{self.name}"

    def key_literal(self, key: object) -> str:
        """The key as it appears between the brackets of a record URL."""
        return f"guid'{key}'" if self.fields[self.key] == "guid" else str(key)

    def record_url(self, base_url: str, division: int, key: object) -> str:
        """Absolute URL of one record, as in ``__metadata.uri`` and ``ExactOnlineEndpoint``."""
        return f"{base_url}/api/v1/{division}/{self.path}({self.key_literal(key)})"


def _fields(**types: FieldType) -> Mapping[str, FieldType]:
    return dict(types)


_AUDIT = _fields(Division="int", Created="datetime", Modified="datetime")

SALES_INVOICES = EntitySet(
    "salesinvoice", "SalesInvoices", "InvoiceID", "Exact.Web.Api.Models.SalesInvoice",
    _fields(
        InvoiceID="guid", InvoiceNumber="int", InvoiceDate="datetime", DueDate="datetime",
        OrderDate="datetime", InvoiceTo="guid", InvoiceToName="string",
        InvoiceToContactPerson="guid", InvoiceToContactPersonFullName="string",
        OrderedBy="guid", OrderedByName="string", AmountDC="float", AmountFC="float",
        Currency="string", Status="int", StatusDescription="string", Type="int",
        Description="string", YourRef="string", PaymentReference="string", Journal="string",
        **_AUDIT,
    ),
    topic="SalesInvoices",
)  # fmt: skip

ACCOUNTS = EntitySet(
    "crm", "Accounts", "ID", "Exact.Web.Api.Models.Account",
    _fields(
        ID="guid", Name="string", Code="string", Email="string", Phone="string",
        Country="string", Language="string", MainContact="guid", IsSales="bool",
        IsSupplier="bool", Status="string", Blocked="bool", InvoicingMethod="int",
        IsAnonymised="bool", Classification1="guid", **_AUDIT,
    ),
    topic="Accounts",
)  # fmt: skip

CONTACTS = EntitySet(
    "crm", "Contacts", "ID", "Exact.Web.Api.Models.Contact",
    _fields(
        ID="guid", Account="guid", AccountName="string", FullName="string",
        FirstName="string", LastName="string", Email="string", BusinessEmail="string",
        Phone="string", BusinessPhone="string", Mobile="string", BusinessMobile="string",
        IsMainContact="bool", Language="string", Country="string",
        JobTitleDescription="string", IsMailingExcluded="bool", IsAnonymised="bool", **_AUDIT,
    ),
    topic="Contacts",
)  # fmt: skip

SALES_ORDERS = EntitySet(
    "salesorder", "SalesOrders", "OrderID", "Exact.Web.Api.Models.SalesOrder",
    _fields(
        OrderID="guid", OrderNumber="int", OrderDate="datetime", DeliveryDate="datetime",
        OrderedBy="guid", OrderedByName="string", OrderedByContactPerson="guid",
        OrderedByContactPersonFullName="string", InvoiceTo="guid", InvoiceToName="string",
        InvoiceToContactPerson="guid", DeliverTo="guid", DeliverToName="string",
        AmountDC="float", AmountFC="float",
        Currency="string", Status="int", DeliveryStatus="int", InvoiceStatus="int",
        ApprovalStatus="int", YourRef="string", Description="string", **_AUDIT,
    ),
    topic="SalesOrders",
)  # fmt: skip

PURCHASE_ORDERS = EntitySet(
    "purchaseorder", "PurchaseOrders", "PurchaseOrderID", "Exact.Web.Api.Models.PurchaseOrder",
    _fields(
        PurchaseOrderID="guid", OrderNumber="int", OrderDate="datetime",
        ReceiptDate="datetime", Supplier="guid", SupplierCode="string", SupplierName="string",
        SupplierContact="guid", SupplierContactPersonFullName="string", AmountDC="float",
        AmountFC="float", VATAmount="float", Currency="string", OrderStatus="int",
        ReceiptStatus="int", InvoiceStatus="int", ApprovalStatus="int", YourRef="string",
        Description="string", **_AUDIT,
    ),
    topic="PurchaseOrders",
)  # fmt: skip

#: Invoices booked directly in a sales journal: no SalesInvoices record, no SalesInvoices
#: webhook (reference section 6). Status 20 open, 50 processed; Type 20 entry, 21 credit note.
SALES_ENTRIES = EntitySet(
    "salesentry", "SalesEntries", "EntryID", "Exact.Web.Api.Models.SalesEntry",
    _fields(
        EntryID="guid", EntryNumber="int", EntryDate="datetime", Customer="guid",
        CustomerName="string", InvoiceNumber="int", YourRef="string", DueDate="datetime",
        AmountDC="float", AmountFC="float", Currency="string", Status="int", Type="int",
        Journal="string", Description="string", PaymentReference="string", **_AUDIT,
    ),
    topic="SalesEntries",
)  # fmt: skip

#: A supplier's invoice as entered in the purchase module. Status 10 draft, 20 open,
#: 50 processed; Type 8030/8033 invoice, 8031/8034 credit note.
PURCHASE_INVOICES = EntitySet(
    "purchase", "PurchaseInvoices", "ID", "Exact.Web.Api.Models.Purchase.PurchaseInvoice",
    _fields(
        ID="guid", Supplier="guid", ContactPerson="guid", Amount="float", VATAmount="float",
        Currency="string", InvoiceDate="datetime", DueDate="datetime", EntryNumber="int",
        Status="int", Type="int", YourRef="string", PaymentReference="string",
        Description="string", Journal="string", **_AUDIT,
    ),
    topic="PurchaseInvoices",
)  # fmt: skip

#: A supplier's invoice booked in a purchase journal. Status 5 rejected, 20 open,
#: 50 processed; Type 30 entry, 31 credit note.
PURCHASE_ENTRIES = EntitySet(
    "purchaseentry", "PurchaseEntries", "EntryID", "Exact.Web.Api.Models.PurchaseEntry",
    _fields(
        EntryID="guid", EntryNumber="int", EntryDate="datetime", Supplier="guid",
        SupplierName="string", InvoiceNumber="int", YourRef="string", DueDate="datetime",
        AmountDC="float", AmountFC="float", Currency="string", Status="int", Type="int",
        Journal="string", Description="string", PaymentReference="string", **_AUDIT,
    ),
    topic="PurchaseEntries",
)  # fmt: skip

#: Money to collect from customers: one open item per issued invoice, settled when paid. No
#: webhook topic fires for it (reference §1.5), so payments are found by reading it.
RECEIVABLES = EntitySet(
    "cashflow", "Receivables", "ID", "Exact.Web.Api.Models.Cashflow.Receivable",
    _fields(
        ID="guid", Account="guid", AccountName="string", AmountDC="float", AmountFC="float",
        Currency="string", DueDate="datetime", InvoiceDate="datetime", InvoiceNumber="int",
        YourRef="string", PaymentReference="string", Status="int", IsFullyPaid="bool",
        AccountContact="guid", AccountContactName="string",
        LastPaymentDate="datetime", TransactionEntryID="guid", **_AUDIT,
    ),
)  # fmt: skip

DIVISIONS = EntitySet(
    "hrm", "Divisions", "Code", "Exact.Web.Api.Models.HRM.Division",
    _fields(
        Code="int", Description="string", HID="int", Country="string", Currency="string",
        Status="int", Main="bool", Created="datetime", Modified="datetime",
    ),
)  # fmt: skip

WEBHOOK_SUBSCRIPTIONS = EntitySet(
    "webhooks", "WebhookSubscriptions", "ID", "Exact.Web.Api.Models.Webhooks.WebhookSubscription",
    _fields(
        ID="guid", CallbackURL="string", Topic="string", ClientID="guid", Description="string",
        IsInstant="bool", UserID="guid", Creator="guid", CreatorFullName="string", **_AUDIT,
    ),
)  # fmt: skip

ENTITY_SETS: tuple[EntitySet, ...] = (
    SALES_INVOICES, ACCOUNTS, CONTACTS, SALES_ORDERS, PURCHASE_ORDERS, RECEIVABLES, DIVISIONS,
    WEBHOOK_SUBSCRIPTIONS, SALES_ENTRIES, PURCHASE_INVOICES, PURCHASE_ENTRIES,
)  # fmt: skip
#: ``service/Entity`` -> set, for routing REST calls.
BY_PATH: Mapping[str, EntitySet] = {entity.path: entity for entity in ENTITY_SETS}
#: ``Entity`` -> set, for the admin API.
BY_NAME: Mapping[str, EntitySet] = {entity.name: entity for entity in ENTITY_SETS}

#: Topics a subscription may name. The official list is not published in a readable form; these
#: are the names seen in real deliveries and maintained clients (reference section 1.5). Only the
#: topics backed by an entity set above ever fire.
TOPICS: frozenset[str] = frozenset({
    "SalesInvoices", "SalesOrders", "PurchaseOrders", "Accounts", "Contacts",
    "PurchaseInvoices", "PurchaseEntries", "SalesEntries", "FinancialTransactions",
    "BankEntries", "CashEntries", "GeneralJournalEntries", "GoodsDeliveries", "Items",
    "StockPositions", "BankAccounts", "CostTransactions", "TimeTransactions", "Documents",
    "DocumentAttachments", "Quotations", "ProjectPlanning", "Subscriptions",
})  # fmt: skip
