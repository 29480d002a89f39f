"""The auditor's handlers: record every notification, attempt and status callback.

A ``notification.released`` (an operator's retry reopened a failed claim) is also where the
retry continues: the auditor publishes the document's Exact event again, so the enricher
re-reads the document, its contacts and the rules, and sends as a new attempt.

``suppression.added`` / ``suppression.lifted`` (the dispatcher's suppression list changed) are
kept as history, linked to the notification that taught them when one did.

``privacy.forget`` (``mlc contacts forget``) erases one person from the trail
(``adapters.privacy.forget``), once per request.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial

import structlog

from auditor.adapters.trail import PostgresTrail
from common.amqp import Routes, route
from common.contracts import (
    EmailEvent,
    ExactWebhookReceived,
    ForgetContact,
    InboundSms,
    Message,
    NotificationAmbiguous,
    NotificationDeferred,
    NotificationFailed,
    NotificationReleased,
    NotificationSent,
    NotificationSkipped,
    SendNotification,
    SourceDocument,
    SuppressionChanged,
    TwilioStatus,
    TwilioStatuses,
)
from common.logging import mask_text

__all__ = [
    "record_email_event",
    "record_forget",
    "record_inbound",
    "record_outcome",
    "record_released",
    "record_requested",
    "record_skipped",
    "record_status",
    "record_statuses",
    "record_suppression",
    "reread_event",
    "routes",
]

log = structlog.get_logger("auditor")


async def record_requested(command: SendNotification, *, trail: PostgresTrail) -> list[Message]:
    await trail.requested(command)
    return []


async def record_outcome(
    event: NotificationSent | NotificationFailed | NotificationAmbiguous | NotificationDeferred,
    *,
    trail: PostgresTrail,
) -> list[Message]:
    await trail.outcome(event.message_id(), event)
    return []


def reread_event(source: SourceDocument, *, client_id: str, reason: str) -> ExactWebhookReceived:
    """The Exact event that makes the enricher read ``source`` again, as a webhook would."""
    now = datetime.now(UTC)
    return ExactWebhookReceived(
        connection_id=source.connection_id,
        client_id=client_id,
        division=source.division,
        topic=source.entity,
        action="Update",
        key_id=source.id,
        endpoint=f"/api/v1/{source.division}/{source.entity}(guid'{source.id}')",
        event_created_on=now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        received_at=now,
        source=reason,
    )


async def record_released(
    event: NotificationReleased, *, trail: PostgresTrail, client_id: str
) -> list[Message]:
    await trail.outcome(event.message_id(), event)
    if event.source is None:
        return []
    # Published on every delivery (a repeat only re-reads the document: the claim stops a
    # second send), so a crash between the record and the publish loses nothing.
    return [reread_event(event.source, client_id=client_id, reason="operator-retry")]


async def record_skipped(event: NotificationSkipped, *, trail: PostgresTrail) -> list[Message]:
    await trail.skipped(event.message_id(), event)
    return []


async def record_status(event: TwilioStatus, *, trail: PostgresTrail) -> list[Message]:
    await trail.status(event)
    return []


async def record_statuses(batch: TwilioStatuses, *, trail: PostgresTrail) -> list[Message]:
    """Callbacks ingress published together: each recorded as alone, queued at once so that
    they share a transaction and a round trip. When one fails the delivery is retried whole;
    the ones already recorded are repeats then (counted once)."""
    await asyncio.gather(*(trail.status(status) for status in batch.statuses))
    return []


async def record_email_event(event: EmailEvent, *, trail: PostgresTrail) -> list[Message]:
    """A SendGrid event is a status of the mail it names: ``X-Message-Id`` is the part of
    ``sg_message_id`` before its first dot (the dispatcher stores it as the provider id). It
    keeps the connection whose SendGrid account signed it, so it applies to that connection's
    mail only; the trail strips the personal fields (email, ip, useragent, url)."""
    if not event.sg_message_id:
        return []  # an asynchronous bounce names no message: nothing to join it to
    await trail.status(
        TwilioStatus(
            resource="email",
            provider_id=event.sg_message_id.split(".", 1)[0],
            status=event.event,
            error_code=event.type,
            raw={k: str(v) for k, v in event.raw.items()},
            received_at=event.received_at,
            connection_id=event.connection_id,
        )
    )
    return []


async def record_inbound(event: InboundSms, *, trail: PostgresTrail) -> list[Message]:
    await trail.inbound(event)
    return []


async def record_suppression(event: SuppressionChanged, *, trail: PostgresTrail) -> list[Message]:
    """Keep the suppression list's history: the list is the dispatcher's, but an operator asks
    the trail why an address gets nothing, and since when."""
    await trail.suppression(event.message_id(), event)
    return []


async def record_forget(event: ForgetContact, *, trail: PostgresTrail) -> list[Message]:
    """Erase one person from the trail; a repeated request changes nothing."""
    counts = await trail.forget(event)
    log.info(
        "contact_forgotten" if counts is not None else "forget_repeated",
        request_id=str(event.request_id),
        connection_id=event.connection_id,
        addresses=[mask_text(a) for a in event.addresses],
        **(counts or {}),
    )
    return []


def routes(*, trail: PostgresTrail, client_id: str) -> Routes:
    """Message type (or prefix ending in ".") -> (model, handler), each handler's ports bound
    here, where the type checker sees them."""
    outcome = partial(record_outcome, trail=trail)
    return {
        "notification.send.": route(SendNotification, partial(record_requested, trail=trail)),
        NotificationSent.routing_key: route(NotificationSent, outcome),
        NotificationFailed.routing_key: route(NotificationFailed, outcome),
        NotificationAmbiguous.routing_key: route(NotificationAmbiguous, outcome),
        NotificationDeferred.routing_key: route(NotificationDeferred, outcome),
        NotificationReleased.routing_key: route(
            NotificationReleased,
            partial(record_released, trail=trail, client_id=client_id),
        ),
        NotificationSkipped.routing_key: route(
            NotificationSkipped, partial(record_skipped, trail=trail)
        ),
        "twilio.status.": route(TwilioStatus, partial(record_status, trail=trail)),
        "twilio.statuses.": route(TwilioStatuses, partial(record_statuses, trail=trail)),
        "email.event.": route(EmailEvent, partial(record_email_event, trail=trail)),
        "twilio.inbound.": route(InboundSms, partial(record_inbound, trail=trail)),
        # .added / .lifted
        "suppression.": route(SuppressionChanged, partial(record_suppression, trail=trail)),
        ForgetContact.routing_key: route(ForgetContact, partial(record_forget, trail=trail)),
    }
