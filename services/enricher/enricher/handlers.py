"""The enricher's handlers: an Exact key in, the notices its rules call for out.

Documents (sales invoices and entries, sales and purchase orders, purchase invoices and
entries), updated: ``Decider.document_changed`` reads the document, maps it to its business
facts and applies the connection's rules (``decisions``). Deleted: its pending notices end; a
``Delete`` is never fetched (the record is gone, and a 404 counts against Exact's error budget).

Accounts and Contacts, updated or deleted: drop the cached customer, so the next document reads
it again. Nothing is fetched and nothing is sent.

Payments (``exact.payment.received``, found by reconciliation): the invoice's pending reminders
end, and the payment rules run on the receivable (a thank-you, off by default).
"""

from __future__ import annotations

import structlog

from common.contracts import ExactWebhookReceived, Message, PaymentReceived
from enricher.decisions import Decider
from enricher.documents import KINDS, TOPIC_KINDS
from enricher.ports import CustomerCache

__all__ = ["HANDLERS", "customer_changed", "handle_exact_event", "payment_received"]

log = structlog.get_logger("enricher")


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
    event: ExactWebhookReceived, *, decider: Decider, cache: CustomerCache
) -> list[Message]:
    """Route one Exact event by topic and action; topics without a rule are acknowledged."""
    topic, action = event.topic.lower(), event.action.lower()
    structlog.contextvars.bind_contextvars(topic=topic, action=action)
    if topic in ("accounts", "contacts"):
        return await customer_changed(event, cache=cache)
    kind = TOPIC_KINDS.get(topic)
    if kind is None:
        log.info("topic_not_handled")
        return []
    if action == "delete":
        await decider.document_deleted(event.connection_id, event.division, kind, event.key_id)
        return []
    return await decider.document_changed(
        event.connection_id, event.division, kind, event.key_id, changed_before=event.received_at
    )


async def payment_received(event: PaymentReceived, *, decider: Decider) -> list[Message]:
    """An invoice was paid in full: its reminders end, then the payment rules run."""
    await decider.invoice_paid(
        event.connection_id, event.division, event.invoice_id, event.invoice_number
    )
    return await decider.document_changed(
        event.connection_id, event.division, KINDS["Receivables"], event.receivable_id
    )


#: Message type (routing key prefix) -> (model, handler); app.py binds each one's ports.
HANDLERS = {
    "exact.": (ExactWebhookReceived, handle_exact_event),
    PaymentReceived.routing_key: (PaymentReceived, payment_received),
}
