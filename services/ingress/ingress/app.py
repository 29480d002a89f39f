"""ingress's app factory: settings, broker and RPC as cleanup contexts, then the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import Counter

from common import amqp, health, topology
from common.contracts import (
    ChannelCredentials,
    ChannelCredentialsGet,
    WebhookSecret,
    WebhookSecretGet,
)
from common.metrics import make_registry
from common.rpc import CachedLookup, RpcClient
from ingress import views
from ingress.guards import ReplayGuard
from ingress.keys import CHANNELS, METRICS, PUBLISHER, REPLAYS, SECRETS, SETTINGS
from ingress.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=settings.ingress_max_body_bytes)
    app[SETTINGS] = settings
    registry = make_registry()
    app[METRICS] = Counter(
        "mlc_ingress_webhooks_total",
        "Webhooks received, by outcome",
        ["source", "outcome"],
        registry=registry,
    )
    app[REPLAYS] = ReplayGuard(settings.ingress_replay_window_seconds)
    checks: dict[str, health.Check] = {}

    async def broker(app: web.Application) -> AsyncIterator[None]:
        async with amqp.connect(settings.amqp_url, name="ingress") as connection:
            channel = await connection.channel()
            await topology.declare(channel)
            await channel.close()
            app[PUBLISHER] = await amqp.Publisher.open(connection)
            rpc = await RpcClient.open(connection)
            ttl = settings.ingress_secret_cache_seconds
            unknown = settings.ingress_unknown_cache_seconds
            app[SECRETS] = CachedLookup(
                rpc,
                lambda c: WebhookSecretGet(connection_id=c),
                WebhookSecret,
                ttl=ttl,
                negative_ttl=unknown,
            )
            app[CHANNELS] = CachedLookup(
                rpc,
                lambda c: ChannelCredentialsGet(connection_id=c),
                ChannelCredentials,
                ttl=ttl,
                negative_ttl=unknown,
            )
            checks["broker"] = health.broker_check(connection)
            checks["rpc"] = rpc.check
            yield

    app.cleanup_ctx.append(broker)
    app.router.add_post("/webhooks/exact/{connection_id}", views.exact_webhook)
    app.router.add_post("/webhooks/twilio/status", views.twilio_status)
    app.router.add_post("/webhooks/twilio/voice-status", views.twilio_voice_status)
    app.router.add_post("/webhooks/twilio/inbound", views.twilio_inbound)
    app.router.add_post("/webhooks/sendgrid/events", views.sendgrid_events)
    health.add_health_routes(app, checks, registry)
    return app
