"""Facts about Exact Online records, as ingress publishes them after verifying a webhook."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from common.contracts.base import Event, stable_id

__all__ = ["ExactWebhookReceived", "PaymentReceived"]


class ExactWebhookReceived(Event):
    """Exact said a record changed. It carries only the key: the enricher reads the record.

    Routing key ``exact.<topic>.<action>`` in lower case, e.g. ``exact.salesinvoices.update``.
    """

    routing_key: ClassVar[str] = "exact.webhook"  # per instance: see key()
    connection_id: str
    client_id: str
    division: int
    topic: str
    action: str
    key_id: UUID
    endpoint: str
    event_created_on: str
    received_at: datetime
    #: "webhook" (Exact told us) or "reconciliation" (we found it by reading what changed).
    source: str = "webhook"

    def key(self) -> str:
        return f"exact.{self.topic.lower()}.{self.action.lower()}"

    def message_id(self) -> str:
        # The same delivery repeated by Exact gets the same id, so consumers can spot repeats.
        return str(
            stable_id(
                self.connection_id,
                self.division,
                self.topic,
                self.key_id,
                self.action,
                self.event_created_on,
            )
        )


class PaymentReceived(Event):
    """A customer paid an invoice in full (found on ``cashflow/Receivables``: Exact has no
    payment webhook). Later stops that invoice's pending reminders."""

    routing_key: ClassVar[str] = "exact.payment.received"
    connection_id: str
    division: int
    receivable_id: UUID
    invoice_id: UUID | None = None
    invoice_number: str | None = None
    amount: float | None = None
    currency: str | None = None
    paid_at: datetime | None = None

    def message_id(self) -> str:
        return str(stable_id("payment", self.connection_id, self.division, self.receivable_id))
