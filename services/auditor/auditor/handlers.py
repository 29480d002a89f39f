"""The auditor's handlers: record every notification, outcome and status callback."""

from __future__ import annotations

from auditor.adapters.trail import PostgresTrail
from common.contracts import (
    Message,
    NotificationAmbiguous,
    NotificationFailed,
    NotificationSent,
    NotificationSkipped,
    SendNotification,
    TwilioStatus,
)

__all__ = ["HANDLERS", "record_outcome", "record_requested", "record_skipped", "record_status"]


async def record_requested(command: SendNotification, *, trail: PostgresTrail) -> list[Message]:
    await trail.requested(command)
    return []


async def record_outcome(
    event: NotificationSent | NotificationFailed | NotificationAmbiguous, *, trail: PostgresTrail
) -> list[Message]:
    await trail.outcome(event.message_id(), event)
    return []


async def record_skipped(event: NotificationSkipped, *, trail: PostgresTrail) -> list[Message]:
    await trail.skipped(event.message_id(), event)
    return []


async def record_status(event: TwilioStatus, *, trail: PostgresTrail) -> list[Message]:
    await trail.status(event)
    return []


#: Message type (or prefix ending in ".") -> (model, handler); ports are bound in app.py.
HANDLERS = {
    "notification.send.": (SendNotification, record_requested),
    NotificationSent.routing_key: (NotificationSent, record_outcome),
    NotificationFailed.routing_key: (NotificationFailed, record_outcome),
    NotificationAmbiguous.routing_key: (NotificationAmbiguous, record_outcome),
    NotificationSkipped.routing_key: (NotificationSkipped, record_skipped),
    "twilio.status.": (TwilioStatus, record_status),
}
