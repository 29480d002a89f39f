"""The dispatcher's handlers: claim the idempotency key, send at most once at a time, report
every attempt through the outbox. The same lifecycle holds for SMS, calls and email.

Claim outcomes of a ``SendNotification`` (every copy of a command meets the same claim)::

    claimed   -> send -> sent | released + deferred (retry) | failed (DLQ) | ambiguous
    in_flight -> another copy holds it right now: retry later and look again
    deferred  -> the last attempt was told to wait (Retry-After): retry after that
    stale / ambiguous -> the resolver settles it by asking the provider: ack
    sent / failed / skipped -> settled already: ack, nothing sent (only ReleaseNotification
                     reopens a failed or skipped claim, never a replayed send)

Before each send the suppression list is asked: a suppressed address is never sent to; the
claim is settled ``skipped`` with a ``notification.skipped`` (reason ``opted_out``). A Twilio
21610 (the recipient replied STOP) fails the send and suppresses the number for SMS and calls.

Each state change and its event (sent, deferred, failed, ambiguous, released) are committed
together and relayed from the outbox, so the handlers return no messages themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import structlog

from common.amqp import Routes, route
from common.contracts import (
    CheckDeliveryStatus,
    Message,
    NotificationAmbiguous,
    NotificationDeferred,
    NotificationFailed,
    NotificationSent,
    NotificationSkipped,
    ReleaseNotification,
    SendNotification,
    TwilioStatus,
)
from common.contracts.twilio import answered_status
from common.errors import AmbiguousOutcome, PermanentError, TransientError
from common.logging import mask_text
from dispatcher.ports import Claim, ClaimStore, Notifier, SuppressionList

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "PHONE_CHANNELS",
    "attempt_send",
    "check_status",
    "failure_reason",
    "release_notification",
    "routes",
    "send_notification",
]

log = structlog.get_logger("dispatcher")

#: Sends per notification before it fails with reason ``exhausted``, counted over every copy
#: of its command (one more than the retry tiers, so one copy alone can use them all).
DEFAULT_MAX_ATTEMPTS = 5

#: Twilio codes that say the number cannot receive SMS (21211 invalid, 21614 not a mobile),
#: and the one that says it opted out. Others (21408 geo permissions, 20003 credentials...)
#: are the account's to fix: ``provider_error``.
_INVALID_NUMBER = frozenset({"21211", "21614"})
_OPTED_OUT = frozenset({"21610"})
#: Channels a phone number's opt-out holds for: a STOP ends calls too.
PHONE_CHANNELS = ("sms", "voice")


def failure_reason(code: object) -> str:
    """The operator's reason for a permanent refusal with Twilio error ``code``."""
    if str(code) in _INVALID_NUMBER:
        return "invalid_number"
    if str(code) in _OPTED_OUT:
        return "opted_out"
    return "provider_error"


async def send_notification(
    command: SendNotification,
    *,
    claims: ClaimStore,
    notifier: Notifier,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    suppressions: SuppressionList | None = None,
) -> list[Message]:
    structlog.contextvars.bind_contextvars(
        notification_id=str(command.notification_id), channel=command.channel
    )
    claim = await claims.claim(command)
    if claim.outcome == "in_flight":
        raise TransientError("another sender holds this notification's claim")
    if claim.outcome == "deferred":
        raise TransientError(
            "waiting for the provider's Retry-After", retry_after=claim.retry_after
        )
    if claim.outcome in ("stale", "ambiguous"):
        log.info("resolution_pending", claim_state=claim.outcome)
        return []
    if claim.outcome != "claimed":
        log.info("duplicate_suppressed", claim_state=claim.outcome)
        return []
    await attempt_send(
        command,
        claim,
        claims=claims,
        notifier=notifier,
        max_attempts=max_attempts,
        suppressions=suppressions,
    )
    return []


async def attempt_send(
    command: SendNotification,
    claim: Claim,
    *,
    claims: ClaimStore,
    notifier: Notifier,
    max_attempts: int,
    suppressions: SuppressionList | None = None,
) -> None:
    """One send under a claim just taken, settled with its event. Raises the adapter's
    TransientError (claim released) or a PermanentError (claim failed) after settling.
    ``suppressions`` is None only where a caller tests the send path alone."""
    key, nid, attempt = command.idempotency_key, command.notification_id, claim.attempts
    connection_id, address = command.source.connection_id, command.recipient.address
    if suppressions is not None:
        found = await suppressions.find(connection_id, command.channel, address)
        if found is not None:
            await claims.settle(
                key,
                "skipped",
                NotificationSkipped(
                    notification_id=nid,
                    source=command.source,
                    fact=command.fact,
                    reason="opted_out",
                    detail=f"suppressed on {command.channel}: {found.reason} ({found.source})",
                    rule=command.rule,
                ),
                reason="opted_out",
            )
            log.info("notification_suppressed", reason=found.reason, source=found.source)
            return
    try:
        receipt = await notifier.send(command)
    except TransientError as exc:
        if claim.budget_used >= max_attempts:
            exhausted = PermanentError(
                f"gave up after {claim.budget_used} attempts: {exc}", code=exc.code
            )
            exhausted.error_class = "exhausted"
            await _fail(command, claim, claims, exhausted, reason="exhausted")
            raise exhausted from exc
        retry_at = (
            datetime.now(UTC) + timedelta(seconds=exc.retry_after) if exc.retry_after else None
        )
        await claims.settle(
            key,
            "released",
            NotificationDeferred(
                notification_id=nid,
                attempt=attempt,
                channel=command.channel,
                error_class=exc.error_class,
                error_code=_code(exc),
                error=mask_text(str(exc)),
                retry_at=retry_at,
            ),
            error_code=_code(exc),
            retry_at=retry_at,
        )
        raise
    except PermanentError as exc:
        reason = failure_reason(exc.code)
        await _fail(command, claim, claims, exc, reason=reason)
        if reason == "opted_out" and suppressions is not None:
            await suppressions.add(
                connection_id,
                PHONE_CHANNELS,
                address,
                reason="opted_out",
                source=f"twilio:{exc.code}",
                notification_id=str(nid),
            )
        raise
    except AmbiguousOutcome as exc:
        await claims.settle(
            key,
            "ambiguous",
            NotificationAmbiguous(
                notification_id=nid,
                attempt=attempt,
                channel=command.channel,
                error=mask_text(str(exc)),
            ),
        )
        log.warning("send_ambiguous", error=mask_text(str(exc)))
        return
    await claims.settle(
        key,
        "sent",
        NotificationSent(
            notification_id=nid,
            attempt=attempt,
            channel=command.channel,
            provider_id=receipt.provider_id,
            provider_status=receipt.status,
        ),
        provider_id=receipt.provider_id,
    )
    log.debug("notification_sent", provider_id=receipt.provider_id, attempt=attempt)


async def _fail(
    command: SendNotification, claim: Claim, claims: ClaimStore, exc: PermanentError, *, reason: str
) -> None:
    await claims.settle(
        command.idempotency_key,
        "failed",
        NotificationFailed(
            notification_id=command.notification_id,
            attempt=claim.attempts,
            channel=command.channel,
            error_class=exc.error_class,
            error_code=_code(exc),
            error=mask_text(str(exc)),
            reason=reason,
        ),
        error_code=_code(exc),
        reason=reason,
    )


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    return None if code is None else str(code)


async def release_notification(
    command: ReleaseNotification, *, claims: ClaimStore
) -> list[Message]:
    """An operator's release of a failed claim; a notification without one is left alone."""
    structlog.contextvars.bind_contextvars(notification_id=str(command.notification_id))
    released = await claims.release(
        str(command.notification_id), requested_by=command.requested_by, correlation_id=None
    )
    log.info("claim_released" if released else "release_ignored_no_failed_claim")
    return []


async def check_status(command: CheckDeliveryStatus, *, notifier: Notifier) -> list[Message]:
    """Fetch a sent message's or call's status and report it as a callback would; the
    auditor keeps it only if it moves the status forward. A finished call also reports who
    answered, when answering machine detection could tell."""
    structlog.contextvars.bind_contextvars(notification_id=str(command.notification_id))
    receipt = await notifier.fetch(
        command.provider_id, connection_id=command.connection_id, channel=command.channel
    )
    log.info("status_fetched", provider_id=receipt.provider_id, status=receipt.status)
    call = command.channel == "voice" or receipt.provider_id.startswith("CA")
    sid, status = ("CallSid", "CallStatus") if call else ("MessageSid", "MessageStatus")
    raw = {sid: receipt.provider_id, status: receipt.status, "Source": "fetch"}
    if receipt.error_code:
        raw["ErrorCode"] = receipt.error_code
    now = datetime.now(UTC)
    statuses = [(receipt.status, raw)]
    answered = answered_status(receipt.answered_by) if call else None
    if answered is not None:
        statuses.append((answered, {**raw, "AnsweredBy": receipt.answered_by or ""}))
    return [
        TwilioStatus(
            resource="call" if call else "message",
            provider_id=receipt.provider_id,
            status=value,
            error_code=receipt.error_code,
            raw=fields,
            received_at=now,
        )
        for value, fields in statuses
    ]


def routes(
    *,
    claims: ClaimStore,
    notifier: Notifier,
    max_attempts: int,
    suppressions: SuppressionList,
) -> Routes:
    """Message type (or prefix ending in ".") -> (model, handler), ports bound here where the
    type checker sees them."""
    send = partial(
        send_notification,
        claims=claims,
        notifier=notifier,
        max_attempts=max_attempts,
        suppressions=suppressions,
    )
    return {
        "notification.send.": route(SendNotification, send),
        ReleaseNotification.routing_key: route(
            ReleaseNotification, partial(release_notification, claims=claims)
        ),
        CheckDeliveryStatus.routing_key: route(
            CheckDeliveryStatus, partial(check_status, notifier=notifier)
        ),
    }
