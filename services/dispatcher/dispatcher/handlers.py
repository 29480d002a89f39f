"""The dispatcher's handler: claim the idempotency key, send once, report what happened.

Claim outcomes::

    claimed   -> send -> sent (NotificationSent) | released + retry | failed (DLQ) | ambiguous
    sent      -> duplicate of a sent notification: ack, nothing sent
    in_flight -> another sender holds it right now: retry later and look again
    stale     -> a sender died mid-call: ambiguous, never resent blindly
    failed / ambiguous -> already settled: ack
"""

from __future__ import annotations

import structlog

from common.contracts import (
    Message,
    NotificationAmbiguous,
    NotificationFailed,
    NotificationSent,
    SendNotification,
)
from common.errors import AmbiguousOutcome, PermanentError, TransientError
from dispatcher.ports import ClaimStore, Notifier

__all__ = ["HANDLERS", "send_notification"]

log = structlog.get_logger("dispatcher")


async def send_notification(
    command: SendNotification, *, claims: ClaimStore, notifier: Notifier
) -> list[Message]:
    key, nid = command.idempotency_key, command.notification_id
    structlog.contextvars.bind_contextvars(notification_id=str(nid), channel=command.channel)
    claim = await claims.claim(key, str(nid), command.channel)
    if claim.outcome == "in_flight":
        raise TransientError("another sender holds this notification's claim")
    if claim.outcome == "stale":
        await claims.mark(key, "ambiguous")
        return [
            NotificationAmbiguous(
                notification_id=nid,
                attempt=claim.attempts,
                channel=command.channel,
                error="sender died mid-send",
            )
        ]
    if claim.outcome != "claimed":
        log.info("duplicate_suppressed", claim_state=claim.outcome)
        return []
    if command.channel != "sms":
        await claims.mark(key, "failed", error_code="channel_unsupported")
        raise PermanentError(
            f"channel {command.channel!r} is not supported yet", code="channel_unsupported"
        )
    try:
        receipt = await notifier.send_sms(
            command.recipient.address,
            command.content,
            connection_id=command.source.connection_id,
        )
    except TransientError:
        await claims.mark(key, "released")
        raise
    except PermanentError as exc:
        await claims.mark(key, "failed", error_code=str(exc.code))
        exc.facts = (
            NotificationFailed(
                notification_id=nid,
                attempt=claim.attempts,
                channel=command.channel,
                error_class=exc.error_class,
                error_code=str(exc.code),
                error=str(exc),
            ),
        )
        raise
    except AmbiguousOutcome as exc:
        await claims.mark(key, "ambiguous")
        log.warning("send_ambiguous", error=str(exc))
        return [
            NotificationAmbiguous(
                notification_id=nid, attempt=claim.attempts, channel=command.channel, error=str(exc)
            )
        ]
    await claims.mark(key, "sent", provider_id=receipt.provider_id)
    log.info("notification_sent", provider_id=receipt.provider_id)
    return [
        NotificationSent(
            notification_id=nid,
            attempt=claim.attempts,
            channel=command.channel,
            provider_id=receipt.provider_id,
            provider_status=receipt.status,
        )
    ]


#: Message type prefix -> (model, handler); ports are bound in app.py.
HANDLERS = {"notification.send.": (SendNotification, send_notification)}
