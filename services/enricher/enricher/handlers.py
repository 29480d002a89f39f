"""The enricher's handlers: an Exact key in, a SendNotification (or nothing) out.

Sales invoice, issued: fetch the invoice, its ``InvoiceTo`` account and that account's contacts
(``$select`` only what is used; the customer from the cache when it holds it), pick the SMS
recipient, render the text and derive the idempotency key from the business fact. A ``Delete``
is never fetched: the record is gone and a 404 would count against Exact's error budget.

Accounts and Contacts, updated or deleted: drop the cached customer, so the next document reads
it again. Nothing is fetched and nothing is sent.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from uuid import UUID

import structlog

from common.contracts import (
    ExactWebhookReceived,
    Message,
    NotificationSkipped,
    PaymentReceived,
    SendNotification,
    SourceDocument,
)
from common.contracts.base import stable_id
from enricher.customers import Customers
from enricher.facts import idempotency_key, invoice_fact
from enricher.ports import Customer, CustomerCache, ExactReader
from enricher.recipients import pick_sms_recipient
from enricher.templates import Renderer

__all__ = ["HANDLERS", "customer_changed", "handle_exact_event"]

log = structlog.get_logger("enricher")

INVOICE_FIELDS = [
    "InvoiceID",
    "InvoiceNumber",
    "InvoiceTo",
    "InvoiceToContactPerson",
    "Status",
    "Type",
    "AmountFC",
    "Currency",
    "DueDate",
]
_DATE = re.compile(r"/Date\((-?\d+)\)/")


def exact_date(value: str | None) -> str | None:
    """``/Date(1732492800000)/`` -> ``2024-11-25``."""
    match = _DATE.fullmatch(value or "")
    if not match:
        return None
    return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC).date().isoformat()


def _uuid(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


async def sales_invoice_updated(
    event: ExactWebhookReceived,
    *,
    exact: ExactReader,
    customers: Customers,
    renderer: Renderer,
    region: str,
    sender_name: str,
) -> list[Message]:
    conn, division = event.connection_id, event.division
    invoice = await exact.get_one(
        conn, division, "salesinvoice/SalesInvoices", "InvoiceID", event.key_id, INVOICE_FIELDS
    )
    if invoice is None:
        log.info("record_gone", entity="SalesInvoices")
        return []
    fact = invoice_fact(invoice)
    if fact is None:
        log.info("no_business_fact", entity="SalesInvoices", status=invoice.get("Status"))
        return []
    number = str(invoice.get("InvoiceNumber") or "")
    source = SourceDocument(
        connection_id=conn,
        division=division,
        entity="SalesInvoices",
        id=event.key_id,
        number=number or None,
    )
    account_id = _uuid(invoice.get("InvoiceTo"))
    preferred = _uuid(invoice.get("InvoiceToContactPerson"))
    customer = Customer(None)
    if account_id:
        customer = await customers.load(conn, division, account_id, contact_person=preferred)
    account = customer.account or {}
    recipient = pick_sms_recipient(
        customer.contacts,
        preferred=preferred,
        main=_uuid(account.get("MainContact")),
        region=account.get("Country") or region,
        language=account.get("Language"),
    )
    if recipient is None:
        return [
            NotificationSkipped(
                notification_id=stable_id(source, fact, "sms"),
                source=source,
                fact=fact,
                reason="no_contact_with_mobile",
            )
        ]
    key = idempotency_key(source, fact, recipient.address, "sms")
    content = renderer.render(
        "sms_invoice_issued",
        recipient.language,
        name=recipient.name,
        number=number,
        company=sender_name,
        amount=invoice.get("AmountFC"),
        currency=invoice.get("Currency"),
        due_date=exact_date(invoice.get("DueDate")),
    )
    return [
        SendNotification(
            notification_id=stable_id("notification", key),
            idempotency_key=key,
            channel="sms",
            recipient=recipient,
            template="sms_invoice_issued",
            content=content,
            source=source,
            fact=fact,
        )
    ]


async def customer_changed(event: ExactWebhookReceived, *, cache: CustomerCache) -> list[Message]:
    """An account or contact changed or went: drop the cached customer it belongs to."""
    conn, division = event.connection_id, event.division
    if event.topic.lower() == "accounts":
        await cache.invalidate_account(conn, division, event.key_id)
        log.info("customer_invalidated", entity="Accounts")
        return []
    account_id = await cache.invalidate_contact(conn, division, event.key_id)
    log.info("customer_invalidated", entity="Contacts", cached=account_id is not None)
    return []


async def handle_exact_event(
    event: ExactWebhookReceived,
    *,
    exact: ExactReader,
    customers: Customers,
    cache: CustomerCache,
    renderer: Renderer,
    region: str,
    sender_name: str,
) -> list[Message]:
    """Route one Exact event by topic and action; topics without a rule are acknowledged."""
    topic, action = event.topic.lower(), event.action.lower()
    structlog.contextvars.bind_contextvars(topic=topic, action=action)
    if topic in ("accounts", "contacts"):
        return await customer_changed(event, cache=cache)
    if action == "delete":
        return []
    if topic == "salesinvoices":
        return await sales_invoice_updated(
            event,
            exact=exact,
            customers=customers,
            renderer=renderer,
            region=region,
            sender_name=sender_name,
        )
    log.info("topic_not_handled")
    return []


async def payment_received(event: PaymentReceived) -> list[Message]:
    """An invoice was paid (found by reconciliation). Nothing to send for it yet; it will stop
    the invoice's pending reminders once reminders exist."""
    log.info("payment_received", invoice_number=event.invoice_number)
    return []


#: Message type (routing key prefix) -> (model, handler); ports are bound in app.py.
HANDLERS = {"exact.": (ExactWebhookReceived, handle_exact_event)}
#: Handlers that need no ports.
PLAIN_HANDLERS = {PaymentReceived.routing_key: (PaymentReceived, payment_received)}
