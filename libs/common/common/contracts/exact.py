"""Facts about Exact Online records, as ingress publishes them after verifying a webhook."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from common.contracts.base import Event, stable_id

__all__ = ["ExactWebhookReceived"]


class ExactWebhookReceived(Event):
    """Exact said a record changed. It carries only the key: the enricher reads the record.

    Routing key ``exact.<topic>.<action>`` in lower case, e.g. ``exact.salesinvoices.update``.
    """

    routing_key = "exact.webhook"  # overridden per instance by key()
    connection_id: str
    client_id: str
    division: int
    topic: str
    action: str
    key_id: UUID
    endpoint: str
    event_created_on: str
    received_at: datetime

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
