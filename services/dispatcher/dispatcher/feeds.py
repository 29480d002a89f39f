"""What feeds the suppression list (queue ``dispatcher.suppressions``).

=============================================  ==============================  ================
event                                          suppresses                      reason
=============================================  ==============================  ================
``twilio.inbound.stop`` (STOP, AFMELDEN...)    the sender, SMS and calls       opted_out
``twilio.inbound.start`` (START, UNSTOP...)    lifts those opt-outs            -
``twilio.status.*`` with ErrorCode 21610       the number, SMS and calls       opted_out
  ... 30005 (unknown destination handset)      the number, SMS and calls       undeliverable
  ... 30004 (blocked), 30006 (landline or      the number, SMS                 undeliverable
  unreachable carrier)
``email.event.bounce`` (``type: bounce``)      the address, email              bounced
``email.event.dropped`` (a bounced,            the address, email              bounced /
  unsubscribed or spam-reporting address)                                      unsubscribed /
                                                                               spam_report
``email.event.spamreport``                     the address, email              spam_report
``email.event.unsubscribe`` / group_...        the address, email              unsubscribed
``email.event.group_resubscribe``              lifts the unsubscribe           -
=============================================  ==============================  ================

Status callbacks ingress published together (``twilio.statuses.*``) are acted on one by one,
as if each had come alone. A status or event signed with one connection's own account is
acted on only for that connection's messages. A soft bounce (``type: blocked``) suppresses
nothing: the next email may get through. The scope is the connection that sent (found by the
message's claim) or, for a reply to the install's shared number, every connection (``*``). A
START sent to the install's number lifts opt-outs in every scope, since the recipient cannot
tell which company texted them from it.

``privacy.forget`` (an erasure, ``mlc contacts forget``) replaces the recipient kept in the
commands of settled claims; the suppression list keeps its address keys, so that an opt-out
outlives the erasure.

``email.event.processed`` and ``dropped`` also prove that an email whose send had no answer
reached SendGrid: its claim is settled sent, and never sent again.
"""

from __future__ import annotations

from functools import partial

import structlog

from common.amqp import Routes, route
from common.contracts import (
    INSTALL_SCOPE,
    EmailEvent,
    ForgetContact,
    InboundSms,
    Message,
    SendNotification,
    TwilioStatus,
    TwilioStatuses,
    address_key,
)
from common.logging import mask_text
from dispatcher.handlers import PHONE_CHANNELS
from dispatcher.ports import ClaimStore, SuppressionList

__all__ = [
    "on_email_event",
    "on_forget",
    "on_inbound",
    "on_message_status",
    "on_message_statuses",
    "routes",
]

log = structlog.get_logger("dispatcher.feeds")

#: Twilio's asynchronous error code -> (channels, reason).
_UNDELIVERABLE = {
    "21610": (PHONE_CHANNELS, "opted_out"),
    "30004": (("sms",), "undeliverable"),
    "30005": (PHONE_CHANNELS, "undeliverable"),
    "30006": (("sms",), "undeliverable"),
}
#: SendGrid's reason for dropping a mail -> our reason (only those about the address).
_DROPPED = {
    "bounced address": "bounced",
    "unsubscribed address": "unsubscribed",
    "spam reporting address": "spam_report",
}
_EMAIL_EVENTS = {
    "spamreport": "spam_report",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}


async def on_inbound(
    event: InboundSms, *, suppressions: SuppressionList, claims: ClaimStore
) -> list[Message]:
    """(``claims`` unused: every feed handler is bound to the same ports.)"""
    source = f"inbound:{event.keyword or event.kind.upper()}"
    if event.kind == "stop":
        scope = event.connection_id or INSTALL_SCOPE
        added = await suppressions.add(
            scope, PHONE_CHANNELS, event.from_number, reason="opted_out", source=source
        )
        log.info("opt_out_received", added=added, scope=scope)
    elif event.kind == "start":
        lifted = await suppressions.lift(
            event.connection_id,
            PHONE_CHANNELS,
            event.from_number,
            reasons=("opted_out",),
            source=source,
        )
        log.info("opt_in_received", lifted=lifted)
    return []


async def on_message_status(
    event: TwilioStatus, *, suppressions: SuppressionList, claims: ClaimStore
) -> list[Message]:
    mark = _UNDELIVERABLE.get(event.error_code or "")
    if event.resource != "message" or mark is None:
        return []
    command = await claims.command_for(provider_id=event.provider_id)
    if command is None:
        log.info("undeliverable_without_claim", provider_id=event.provider_id)
        return []
    if _foreign(event.connection_id, command):
        return []
    channels, reason = mark
    await suppressions.add(
        command.source.connection_id,
        channels,
        command.recipient.address,
        reason=reason,
        source=f"twilio:{event.error_code}",
        notification_id=str(command.notification_id),
    )
    return []


async def on_message_statuses(
    batch: TwilioStatuses, *, suppressions: SuppressionList, claims: ClaimStore
) -> list[Message]:
    """Callbacks ingress published together: each acted on as alone (idempotent: a retried
    batch adds no suppression twice)."""
    for status in batch.statuses:
        await on_message_status(status, suppressions=suppressions, claims=claims)
    return []


def _foreign(signed_for: str | None, command: SendNotification) -> bool:
    """A callback signed with one connection's own account about another connection's
    message: never acted on (the auditor refuses it too, and counts it)."""
    if signed_for is None or signed_for == command.source.connection_id:
        return False
    log.warning(
        "security_event",
        kind="cross_tenant_feed",
        signed_for=signed_for,
        owner=command.source.connection_id,
    )
    return True


def _email_reason(event: EmailEvent) -> str | None:
    if event.event == "bounce":
        return "bounced" if (event.type or "bounce") == "bounce" else None
    if event.event == "dropped":
        return _DROPPED.get((event.reason or "").strip().lower())
    return _EMAIL_EVENTS.get(event.event)


async def on_email_event(
    event: EmailEvent, *, suppressions: SuppressionList, claims: ClaimStore
) -> list[Message]:
    nid = event.notification_id
    if nid and event.sg_message_id and event.event in ("processed", "dropped"):
        provider_id = event.sg_message_id.split(".", 1)[0]
        if await claims.confirm_sent(nid, provider_id):
            log.info("email_send_confirmed_by_event", notification_id=nid)
    reason = _email_reason(event)
    if reason is None and event.event != "group_resubscribe":
        return []
    command = await claims.command_for(notification_id=nid) if nid else None
    if command is not None and _foreign(event.connection_id, command):
        return []
    address = event.email or (command.recipient.address if command else None)
    if not address:
        return []
    scope = command.source.connection_id if command else event.connection_id or INSTALL_SCOPE
    source = f"sendgrid:{event.event}"
    if reason is None:  # group_resubscribe
        await suppressions.lift(
            scope, ("email",), address, reasons=("unsubscribed",), source=source
        )
        return []
    await suppressions.add(
        scope, ("email",), address, reason=reason, source=source, notification_id=nid
    )
    return []


async def on_forget(
    event: ForgetContact, *, suppressions: SuppressionList, claims: ClaimStore
) -> list[Message]:
    erased = await claims.erase_recipients(
        None if event.contact_id is None else str(event.contact_id),
        [address_key(a) for a in event.addresses],
    )
    log.info(
        "contact_forgotten",
        request_id=str(event.request_id),
        claims_erased=erased,
        addresses=[mask_text(a) for a in event.addresses],
    )
    return []


def routes(*, suppressions: SuppressionList, claims: ClaimStore) -> Routes:
    """Message type (or prefix ending in ".") -> (model, handler), ports bound here where the
    type checker sees them."""
    return {
        "twilio.inbound.": route(
            InboundSms, partial(on_inbound, suppressions=suppressions, claims=claims)
        ),
        "twilio.status.": route(
            TwilioStatus, partial(on_message_status, suppressions=suppressions, claims=claims)
        ),
        "twilio.statuses.": route(
            TwilioStatuses, partial(on_message_statuses, suppressions=suppressions, claims=claims)
        ),
        "email.event.": route(
            EmailEvent, partial(on_email_event, suppressions=suppressions, claims=claims)
        ),
        ForgetContact.routing_key: route(
            ForgetContact, partial(on_forget, suppressions=suppressions, claims=claims)
        ),
    }
