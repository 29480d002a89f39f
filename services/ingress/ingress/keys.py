"""Typed application state of the ingress app."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import Counter

from common.amqp import Publisher
from ingress.settings import Settings
from ingress.webhook_secrets import WebhookSecrets

__all__ = ["METRICS", "PUBLISHER", "SECRETS", "SETTINGS"]

SETTINGS = web.AppKey("settings", Settings)
PUBLISHER = web.AppKey("publisher", Publisher)
SECRETS = web.AppKey("secrets", WebhookSecrets)
#: mlc_ingress_webhooks_total{source,outcome}
METRICS = web.AppKey("webhooks_total", Counter)
