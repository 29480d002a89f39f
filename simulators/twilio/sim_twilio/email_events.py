"""SendGrid's Event Webhook, as the simulator plays it after an accepted ``mail/send``.

When ``MLC_SIM_TWILIO_EVENT_WEBHOOK_URL`` is set, each accepted mail's recipients get events
posted there as SendGrid posts them: a JSON array, signed (``sim_twilio.event_webhook``), with
the mail's ``custom_args`` as top-level keys of every event (reserved keys win), and a fresh
``sg_event_id`` each. The outcome follows a ``final_status`` fault with ``api: mail``:

==============  =====================================================
(none)          ``processed``, then ``delivered``
``delivered``   ``processed``, then ``delivered``
``read``        ``processed``, ``delivered``, then ``open``
``undelivered`` ``processed``, then ``bounce`` (``type: bounce``, a hard bounce)
``failed``      ``dropped`` (``reason: Bounced Address``)
==============  =====================================================

A post that is not answered 2xx is tried again (SendGrid retries for up to 24 hours; here a
few times, with the status-callback policy's attempts and backoff).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

import aiohttp

from sim_twilio.event_webhook import signed_headers
from sim_twilio.settings import Settings

__all__ = ["OUTCOMES", "events_for", "post_events"]

#: final_status -> the events one recipient gets, in order.
OUTCOMES: dict[str, list[str]] = {
    "delivered": ["processed", "delivered"],
    "sent": ["processed", "delivered"],
    "read": ["processed", "delivered", "open"],
    "undelivered": ["processed", "bounce"],
    "failed": ["dropped"],
}
_RESERVED = {"email", "event", "timestamp", "sg_event_id", "sg_message_id", "smtp-id"}


def events_for(
    message_id: str, email: str, outcome: str, custom_args: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The event objects SendGrid would post about one recipient of one message."""
    now = int(time.time())
    extra = {k: str(v) for k, v in (custom_args or {}).items() if k not in _RESERVED}
    events = []
    for kind in OUTCOMES.get(outcome, OUTCOMES["delivered"]):
        event: dict[str, Any] = {
            **extra,
            "email": email,
            "event": kind,
            "timestamp": now,
            "sg_event_id": secrets.token_urlsafe(16),
            "sg_message_id": f"{message_id}.sim-filter-0",
            "smtp-id": f"<{message_id}@sim.sendgrid.invalid>",
        }
        if kind == "bounce":
            event |= {"type": "bounce", "reason": "550 5.1.1 The email account does not exist"}
        if kind == "dropped":
            event["reason"] = "Bounced Address"
        events.append(event)
    return events


async def post_events(
    session: aiohttp.ClientSession, settings: Settings, events: list[dict[str, Any]]
) -> bool:
    """POST each event as SendGrid does (one by one, after the callback delay), signed."""
    url = settings.sim_twilio_event_webhook_url
    if not url:
        return False
    delivered = True
    for event in events:
        await asyncio.sleep(settings.sim_twilio_callback_delay)
        body = json.dumps([event]).encode() + b"\r\n"
        delivered &= await _post(session, settings, url, body)
    return delivered


async def _post(session: aiohttp.ClientSession, settings: Settings, url: str, body: bytes) -> bool:
    timeout = aiohttp.ClientTimeout(total=settings.sim_twilio_callback_timeout)
    attempts = max(settings.sim_twilio_callback_attempts, 1)
    for attempt in range(1, attempts + 1):
        try:
            async with session.post(
                url, data=body, headers=signed_headers(body), timeout=timeout
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return True
        except (aiohttp.ClientError, TimeoutError):
            pass
        if attempt < attempts:
            await asyncio.sleep(settings.sim_twilio_callback_backoff * 2 ** (attempt - 1))
    return False
