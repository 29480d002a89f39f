"""The notification command and the facts about its fate.

Lifecycle of one notification (all share ``notification_id``)::

    SendNotification ──▶ NotificationSent ──▶ (TwilioStatus ...)
           │         ├─▶ NotificationDeferred     one attempt failed transiently; retried later
           │         ├─▶ NotificationFailed       permanent, or retries used up
           │         │      └─ ReleaseNotification (operator) ─▶ NotificationReleased ─▶ resend
           │         └─▶ NotificationAmbiguous    may have been sent; settled by asking Twilio
           └─ or, instead, NotificationSkipped from the enricher (nobody to tell, not a fact)
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from common.contracts.base import Command, Event, stable_id

__all__ = [
    "FAILURE_REASONS",
    "Channel",
    "CheckDeliveryStatus",
    "NotificationAmbiguous",
    "NotificationDeferred",
    "NotificationFailed",
    "NotificationReleased",
    "NotificationSent",
    "NotificationSkipped",
    "Recipient",
    "ReleaseNotification",
    "SendNotification",
    "SourceDocument",
]

Channel = Literal["sms", "email", "voice"]

#: Why a notification needs an operator, as ``mlc audit failed`` groups them.
FAILURE_REASONS = ("no_contact", "invalid_number", "opted_out", "provider_error", "exhausted")


class SourceDocument(BaseModel):
    """The Exact record a notification is about: the audit trail is keyed by it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    connection_id: str
    division: int
    entity: str
    id: UUID
    number: str | None = None


class Recipient(BaseModel):
    """Who gets it: the Exact contact and the address on the chosen channel."""

    model_config = ConfigDict(frozen=True, extra="allow")

    contact_id: UUID | None = None
    address: str  # E.164 for sms/voice, an email address for email
    name: str | None = None
    language: str | None = None
    time_zone: str | None = None


class SendNotification(Command):
    """Send one notification. The dispatcher claims ``idempotency_key`` before sending."""

    routing_key: ClassVar[str] = "notification.send"  # per channel, see key()
    notification_id: UUID
    idempotency_key: str
    channel: Channel
    recipient: Recipient
    template: str
    content: str
    subject: str | None = None
    source: SourceDocument
    fact: str
    urgency: Literal["normal", "urgent"] = "normal"
    not_before: datetime | None = None
    #: The enricher's rule that decided this notification (its rules file names it).
    rule: str | None = None
    #: SMS only: "GSM-7" or "UCS-2", and the number of segments the text costs.
    encoding: str | None = None
    segments: int | None = None

    def key(self) -> str:
        return f"notification.send.{self.channel}"

    def message_id(self) -> str:
        return str(self.notification_id)


class _Outcome(Event):
    notification_id: UUID
    attempt: int
    channel: Channel | None = None

    def message_id(self) -> str:
        # One outcome per notification and attempt: a republished copy is the same fact.
        return str(stable_id(self.routing_key, self.notification_id, self.attempt))


class NotificationSent(_Outcome):
    """A provider accepted the send."""

    routing_key: ClassVar[str] = "notification.sent"
    provider_id: str
    provider_status: str | None = None


class NotificationFailed(_Outcome):
    """The send failed for good (permanent error or retries used up)."""

    routing_key: ClassVar[str] = "notification.failed"
    error_class: str
    error_code: str | None = None
    error: str | None = None
    #: One of FAILURE_REASONS (absent from producers that predate it).
    reason: str | None = None


class NotificationDeferred(_Outcome):
    """One attempt failed in a way that may heal (429, 5xx, connection refused); the
    notification is tried again, not before ``retry_at``."""

    routing_key: ClassVar[str] = "notification.deferred"
    error_class: str
    error_code: str | None = None
    error: str | None = None
    retry_at: datetime | None = None


class NotificationReleased(_Outcome):
    """An operator released a failed notification's claim: the next command for it may send.
    ``attempt`` is the last attempt before the release."""

    routing_key: ClassVar[str] = "notification.released"
    idempotency_key: str
    source: SourceDocument | None = None
    requested_by: str | None = None


class NotificationAmbiguous(_Outcome):
    """The provider may have accepted it: resolved by a callback or a lookup, never resent."""

    routing_key: ClassVar[str] = "notification.ambiguous"
    error: str | None = None


class ReleaseNotification(Command):
    """Release the failed claim of ``notification_id`` so that a new command for it may send.
    Only this command releases a failed claim: a replayed send never does."""

    routing_key: ClassVar[str] = "notification.release"
    notification_id: UUID
    requested_by: str | None = None
    #: Distinguishes two releases of the same notification (the operator's request time).
    requested_at: datetime

    def message_id(self) -> str:
        return str(stable_id(self.routing_key, self.notification_id, self.requested_at))


class CheckDeliveryStatus(Command):
    """Ask the provider for the current status of a sent notification whose callbacks have not
    brought a final one (lost while ingress was down, or never sent). The answer comes back as
    a ``TwilioStatus`` event, as a callback would."""

    routing_key: ClassVar[str] = "notification.check-status"
    notification_id: UUID
    provider_id: str
    connection_id: str
    channel: Channel | None = None
    requested_at: datetime

    def message_id(self) -> str:
        return str(stable_id(self.routing_key, self.provider_id, self.requested_at))


class NotificationSkipped(Event):
    """A business fact that deserved a notification, but nobody can be told (and why)."""

    routing_key: ClassVar[str] = "notification.skipped"
    notification_id: UUID
    source: SourceDocument
    fact: str
    #: "no_contact" (nobody reachable on an allowed channel) or "opted_out" (anonymised, or
    #: excluded where the rules say so); "no_contact_with_mobile" in older messages.
    reason: str
    #: What was missing or who opted out, in words (never an address).
    detail: str | None = None
    rule: str | None = None

    def message_id(self) -> str:
        return str(stable_id(self.routing_key, self.notification_id))
