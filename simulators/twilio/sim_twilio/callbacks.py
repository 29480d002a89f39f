"""Deliver one signed status callback, retrying a few times, and record every attempt.

Twilio POSTs ``application/x-www-form-urlencoded`` to the callback URL with
``X-Twilio-Signature`` = base64 HMAC-SHA1 keyed with the account's primary auth token over the
URL followed by the sorted parameters (``common.signatures.twilio_signature``). The key is the
auth token even when the REST call used an API key.

A URL fragment (``#rc=...`` connection overrides) is not sent over HTTP, so it is neither
posted nor signed here.

Attempt record: ``{"attempt", "at", "http_status", "error"}``: ``http_status`` is ``None`` when
no response came (``error`` then names the exception class).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urldefrag

import aiohttp

from common.signatures import twilio_signature
from sim_twilio.metrics import Metrics
from sim_twilio.settings import Settings
from sim_twilio.state import Delivery, utcnow

__all__ = ["CallbackPolicy", "deliver"]


@dataclass(frozen=True)
class CallbackPolicy:
    """How hard to try: total attempts, first backoff (doubling) and per-attempt timeout."""

    auth_token: str
    attempts: int = 3
    backoff: float = 0.1
    timeout: float = 5.0

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackPolicy:
        """The policy the settings ask for; the auth token signs even when REST uses API keys."""
        return cls(
            auth_token=settings.twilio_auth_token.get_secret_value(),
            attempts=settings.sim_twilio_callback_attempts,
            backoff=settings.sim_twilio_callback_backoff,
            timeout=settings.sim_twilio_callback_timeout,
        )


async def deliver(
    session: aiohttp.ClientSession,
    delivery: Delivery,
    policy: CallbackPolicy,
    metrics: Metrics,
    resource: str,
) -> bool:
    """POST ``delivery`` until a 2xx or the attempts run out; True when it was accepted."""
    url = urldefrag(delivery.url).url
    headers = {
        "X-Twilio-Signature": twilio_signature(policy.auth_token, url, delivery.params),
        "User-Agent": "TwilioProxy/1.1",
        "Accept": "*/*",
    }
    timeout = aiohttp.ClientTimeout(total=policy.timeout)
    for attempt in range(1, max(policy.attempts, 1) + 1):
        record: dict[str, object] = {
            "attempt": attempt,
            "at": utcnow().isoformat(),
            "http_status": None,
            "error": None,
        }
        delivery.attempts.append(record)
        try:
            async with session.post(
                url, data=delivery.params, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                await response.read()
                record["http_status"] = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            record["error"] = type(exc).__name__
            metrics.callback_attempts.labels(resource, "connection_error").inc()
        else:
            if 200 <= response.status < 300:
                metrics.callback_attempts.labels(resource, "ok").inc()
                delivery.delivered = True
                return True
            metrics.callback_attempts.labels(resource, "http_error").inc()
        if attempt < policy.attempts:
            await asyncio.sleep(policy.backoff * 2 ** (attempt - 1))
    return False
