"""How a created message moves on, and the status callbacks it sends on the way.

::

    accepted (Messaging Service) ─┐
                                  ├─▶ sent ─▶ delivered | undelivered (| read)
    queued (From) ────────────────┘     └──▶ failed (never reached the carrier)

No callback is sent for the initial status (Twilio does not). Each later step waits
``delay`` seconds, updates the resource (``date_sent`` and the picked ``from`` on ``sent``,
``error_code`` on ``undelivered``/``failed``), and, when the message has a StatusCallback,
posts a signed callback. Faults may duplicate the callbacks or deliver them in reverse order;
the resource itself always moves forward in the true order, as Twilio's does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from sim_twilio.callbacks import CallbackPolicy, deliver
from sim_twilio.metrics import Metrics
from sim_twilio.resources import API_VERSION, rfc2822, segments
from sim_twilio.state import Delivery, Record, utcnow

__all__ = ["DEFAULT_ERROR_CODES", "MessagePlan", "callback_params", "run_message", "steps"]

#: Error codes used when a final status needs one and no fault gave it: 30003 "unreachable
#: handset" for undelivered, 30008 "unknown error" for failed (reference section 4).
DEFAULT_ERROR_CODES = {"undelivered": 30003, "failed": 30008}
_ERROR_MESSAGES = {
    30003: "Unreachable destination handset",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
}


@dataclass(frozen=True)
class MessagePlan:
    """What will happen to one message."""

    final_status: str
    error_code: int | None
    sender: str
    delay: float
    duplicate: bool = False
    reorder: bool = False


def steps(final_status: str) -> list[str]:
    """The statuses after creation, in the order Twilio reaches them."""
    if final_status == "failed":
        return ["failed"]
    if final_status == "sent":
        return ["sent"]
    if final_status == "read":
        return ["sent", "delivered", "read"]
    return ["sent", final_status]


def callback_params(record: Record, error_code: int | None) -> list[tuple[str, str]]:
    """The form fields of a status callback for the resource's current status."""
    message = record.resource
    status = message["status"]
    params = [
        ("SmsSid", message["sid"]),
        ("SmsMessageSid", message["sid"]),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", message["to"]),
    ]
    if message["messaging_service_sid"]:
        params.append(("MessagingServiceSid", message["messaging_service_sid"]))
    params += [
        ("MessageSid", message["sid"]),
        ("AccountSid", message["account_sid"]),
        ("From", message["from"] or ""),
        ("ApiVersion", API_VERSION),
    ]
    if status in ("failed", "undelivered") and error_code is not None:
        params.append(("ErrorCode", str(error_code)))
    if status in ("delivered", "undelivered"):
        # Carrier DLR time, YYMMDDhhmm, minute precision, no zone (Twilio changelog).
        params.append(("RawDlrDoneDate", utcnow().strftime("%y%m%d%H%M")))
    return params


def _advance(record: Record, status: str, plan: MessagePlan) -> None:
    message = record.resource
    now = utcnow()
    message["status"] = status
    message["date_updated"] = rfc2822(now)
    if status in ("sent", "failed"):
        message["from"] = message["from"] or plan.sender
        message["num_segments"] = str(segments(message["body"] or ""))
    if status == "sent":
        message["date_sent"] = rfc2822(now)
    if status in ("failed", "undelivered"):
        message["error_code"] = plan.error_code
        message["error_message"] = _ERROR_MESSAGES.get(plan.error_code or 0)


async def run_message(
    record: Record,
    plan: MessagePlan,
    *,
    session: aiohttp.ClientSession,
    policy: CallbackPolicy,
    metrics: Metrics,
) -> None:
    """Walk the message through :func:`steps`, posting callbacks as planned."""
    pending: list[Delivery] = []
    for status in steps(plan.final_status):
        await asyncio.sleep(plan.delay)
        _advance(record, status, plan)
        if not record.status_callback:
            continue
        params = callback_params(record, plan.error_code)
        copies = [Delivery(status, record.status_callback, params)]
        if plan.duplicate:
            copies.append(Delivery(status, record.status_callback, params))
        if plan.reorder:
            pending[:0] = copies  # later statuses go first
            continue
        for delivery in copies:
            record.callbacks.append(delivery)
            await deliver(session, delivery, policy, metrics, "message")
    for delivery in pending:
        record.callbacks.append(delivery)
        await deliver(session, delivery, policy, metrics, "message")
