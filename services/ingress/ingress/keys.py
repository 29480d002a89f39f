"""Typed application state of the ingress app."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import Counter

from common.amqp import Publisher
from common.contracts import ChannelCredentials, WebhookSecret
from common.rpc import CachedLookup
from ingress.batching import StatusBatcher
from ingress.guards import ReplayGuard
from ingress.ratelimit import RateLimiter
from ingress.settings import Settings

__all__ = [
    "CHANNELS",
    "LIMITER",
    "METRICS",
    "PUBLISHER",
    "REPLAYS",
    "SECRETS",
    "SECURITY",
    "SETTINGS",
    "STATUSES",
]

SETTINGS = web.AppKey("settings", Settings)
PUBLISHER = web.AppKey("publisher", Publisher)
#: Status callbacks, published together when they arrive together (``ingress.batching``).
STATUSES = web.AppKey("statuses", StatusBatcher)
#: Exact webhook secrets per connection, from token-keeper.
SECRETS = web.AppKey("secrets", CachedLookup[WebhookSecret])
#: Twilio accounts a connection brings (their auth token signs that account's callbacks).
CHANNELS = web.AppKey("channels", CachedLookup[ChannelCredentials])
#: Webhook bodies published lately (replays are acknowledged, not published again).
REPLAYS = web.AppKey("replays", ReplayGuard)
#: mlc_ingress_webhooks_total{source,outcome}
METRICS = web.AppKey("webhooks_total", Counter)
#: mlc_security_events_total{kind} (``ingress.security``)
SECURITY = web.AppKey("security_events_total", Counter)
#: Token buckets per source address on the webhook routes (``ingress.ratelimit``).
LIMITER = web.AppKey("limiter", RateLimiter)
