"""SendGrid Event Webhook events, as ingress publishes them after verifying the signature."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from common.contracts.base import Event, stable_id

__all__ = ["EMAIL_EVENTS", "NOTIFICATION_ARG", "EmailEvent"]

#: The ``custom_args`` key the dispatcher sets on every email and SendGrid returns as a
#: top-level key of each event: it joins an event to its notification. Prefixed, because
#: SendGrid's own keys (``email``, ``event``...) win over custom ones of the same name.
NOTIFICATION_ARG = "mlc_notification_id"

#: Event types SendGrid posts (delivery, engagement, account).
EMAIL_EVENTS = frozenset(
    {
        "processed",
        "deferred",
        "delivered",
        "bounce",
        "dropped",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
        "account_status_change",
    }
)


class EmailEvent(Event):
    """One SendGrid event. Routing key ``email.event.<event>``; one fact per ``sg_event_id``."""

    routing_key: ClassVar[str] = "email.event"
    connection_id: str | None = None
    event: str
    sg_event_id: str
    #: SendGrid's id of the message (missing on asynchronous bounces).
    sg_message_id: str | None = None
    notification_id: str | None = None
    #: The recipient address (personal data: masked in logs, needed for suppressions).
    email: str | None = None
    #: bounce: ``bounce`` (hard) or ``blocked`` (soft); also reason / status from SendGrid.
    type: str | None = None
    reason: str | None = None
    occurred_at: datetime | None = None
    received_at: datetime
    raw: dict[str, Any]

    def key(self) -> str:
        return f"email.event.{self.event}"

    def message_id(self) -> str:
        # SendGrid repeats posts; the same sg_event_id is the same fact.
        return str(stable_id("email.event", self.sg_event_id))
