"""Settling sends whose outcome is unknown, by asking the provider.

A claim is unsettled when it stayed ``sending`` past the stale period (its sender died, maybe
before the request left, maybe after) or went ``ambiguous`` (no answer after the request
left). After the deadline the resolver asks the provider what it created for that recipient
since the claim (Twilio lists messages and calls; for email, see ``adapters.sendgrid``)::

    found (same body)  -> sent, with the provider's id: NotificationSent (callbacks now join)
    not found          -> proven never sent: claimed again and sent (one more attempt)
    cannot tell yet    -> left alone; asked again after the next deadline

The deadline leaves Twilio time to list what it accepted; a claim is never resent without
that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from common.contracts import NotificationSent
from common.errors import PermanentError, TransientError
from dispatcher.handlers import attempt_send
from dispatcher.metrics import DispatchMetrics
from dispatcher.ports import ClaimStore, Notifier, SuppressionList, Unsettled

__all__ = ["LOOKUP_SKEW", "resolve", "resolve_due", "resolve_forever"]

log = structlog.get_logger("dispatcher.resolver")

#: Look this far before the claim: Twilio's clock and ours may differ.
LOOKUP_SKEW = timedelta(minutes=5)


async def resolve(
    unsettled: Unsettled,
    *,
    claims: ClaimStore,
    notifier: Notifier,
    max_attempts: int,
    suppressions: SuppressionList | None = None,
) -> str:
    """Settle one claim; returns what happened (``sent``, ``resent``, ``resend_failed``,
    ``lookup_failed``, ``unresolvable``, ``busy``)."""
    command = unsettled.command
    structlog.contextvars.bind_contextvars(notification_id=unsettled.notification_id)
    try:
        if command is None:  # a claim from before commands were kept: only a human can tell
            log.warning("claim_unresolvable", claim_state=unsettled.state)
            return "unresolvable"
        try:
            found = await notifier.find(command, since=unsettled.claimed_at - LOOKUP_SKEW)
        except TransientError as exc:
            log.warning("claim_lookup_failed", error=type(exc).__name__, code=exc.code)
            return "lookup_failed"
        if found is not None:
            await claims.settle(
                unsettled.key,
                "sent",
                NotificationSent(
                    notification_id=command.notification_id,
                    attempt=unsettled.attempts,
                    channel=command.channel,
                    provider_id=found.provider_id,
                    provider_status=found.status,
                ),
                provider_id=found.provider_id,
            )
            log.info("claim_resolved_sent", provider_id=found.provider_id)
            return "sent"
        claim = await claims.retake(unsettled.key)
        if claim.outcome != "claimed":
            return "busy"
        log.info("claim_resolved_not_sent", attempt=claim.attempts)
        try:
            await attempt_send(
                command,
                claim,
                claims=claims,
                notifier=notifier,
                max_attempts=max_attempts,
                suppressions=suppressions,
            )
        except (TransientError, PermanentError):
            # settled with its event already; a released claim is sent by the next copy
            return "resend_failed"
        return "resent"
    finally:
        structlog.contextvars.unbind_contextvars("notification_id")


async def resolve_due(
    *,
    claims: ClaimStore,
    notifier: Notifier,
    max_attempts: int,
    limit: int = 20,
    metrics: DispatchMetrics | None = None,
    suppressions: SuppressionList | None = None,
) -> list[str]:
    """Resolve the claims that are due now; returns each one's outcome."""
    outcomes = []
    for unsettled in await claims.unsettled(limit=limit):
        outcome = await resolve(
            unsettled,
            claims=claims,
            notifier=notifier,
            max_attempts=max_attempts,
            suppressions=suppressions,
        )
        if metrics is not None:
            metrics.resolutions.labels(outcome=outcome).inc()
        outcomes.append(outcome)
    return outcomes


async def resolve_forever(
    stop: asyncio.Event,
    *,
    claims: ClaimStore,
    notifier: Notifier,
    max_attempts: int,
    interval: float,
    metrics: DispatchMetrics | None = None,
    suppressions: SuppressionList | None = None,
) -> None:
    """Resolve due claims every ``interval`` seconds until ``stop``; failures are logged and
    the loop goes on."""
    while not stop.is_set():
        try:
            await resolve_due(
                claims=claims,
                notifier=notifier,
                max_attempts=max_attempts,
                metrics=metrics,
                suppressions=suppressions,
            )
        except Exception as exc:  # the loop must outlive a database outage
            log.warning("claim_resolution_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
