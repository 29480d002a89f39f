"""ingress's app factory: settings, broker and RPC as cleanup contexts, the per-source rate
limit as a middleware in front of the webhook routes, then the routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

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
from ingress.batching import StatusBatcher
from ingress.guards import ReplayGuard, expect_continue, no_route
from ingress.keys import (
    CHANNELS,
    LIMITER,
    METRICS,
    PUBLISHER,
    REPLAYS,
    SECRETS,
    SECURITY,
    SETTINGS,
    STATUSES,
)
from ingress.ratelimit import RateLimiter, parse_networks, rate_limit_middleware
from ingress.security import security_events_counter
from ingress.settings import Settings

__all__ = ["create_app"]


def _limiter(settings: Settings) -> RateLimiter:
    return RateLimiter(
        settings.ingress_rate_limit_per_second,
        settings.ingress_rate_limit_burst,
        settings.ingress_rate_limit_sources,
    )


def create_app(settings: Settings) -> web.Application:
    limiter = _limiter(settings)
    trusted = parse_networks(settings.ingress_trusted_proxies)
    app = web.Application(
        client_max_size=settings.ingress_max_body_bytes,
        middlewares=[rate_limit_middleware(limiter, trusted, views.rate_limited)],
    )
    app[SETTINGS] = settings
    app[LIMITER] = limiter
    registry = make_registry()
    app[METRICS] = Counter(
        "mlc_ingress_webhooks_total",
        "Webhooks received, by outcome",
        ["source", "outcome"],
        registry=registry,
    )
    app[SECURITY] = security_events_counter(registry)
    app[REPLAYS] = ReplayGuard(settings.ingress_replay_window_seconds)
    checks: dict[str, health.Check] = {}

    async def broker(app: web.Application) -> AsyncIterator[None]:
        async with amqp.connect(settings.amqp_url, name="ingress") as connection:
            channel = await connection.channel()
            await topology.declare_for(channel, "ingress")
            await channel.close()
            app[PUBLISHER] = await amqp.Publisher.open(
                connection, max_batch=settings.publish_batch_max
            )
            app[STATUSES] = StatusBatcher(app[PUBLISHER])
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
    _add_routes(app, checks, registry)
    return app


#: The path of the catch-all route: every request no endpoint takes (not an endpoint itself).
_CATCH_ALL = "/{path:.*}"
#: The webhook routes (``ingress.views``).
_WEBHOOKS = {
    "/webhooks/exact/{connection_id}": views.exact_webhook,
    "/webhooks/twilio/status": views.twilio_status,
    "/webhooks/twilio/voice-status": views.twilio_voice_status,
    "/webhooks/twilio/inbound": views.twilio_inbound,
    "/webhooks/sendgrid/events": views.sendgrid_events,
}


def _add_routes(
    app: web.Application, checks: dict[str, health.Check], registry: CollectorRegistry
) -> None:
    """The webhooks and the standard health routes, every one with ingress's own ``Expect``
    handler (``guards.expect_continue``): aiohttp's default answers some values with a 500.
    The health routes are built by ``common.health`` on a scratch app and moved here. Last, a
    catch-all (``guards.no_route``) answers the 404s and 405s with that handler too."""
    for path, view in _WEBHOOKS.items():
        app.router.add_post(path, view, expect_handler=expect_continue)
    scratch = web.Application()
    health.add_health_routes(scratch, checks, registry)
    for route in scratch.router.routes():
        if route.method == "GET" and route.resource is not None:
            app.router.add_get(
                route.resource.canonical, route.handler, expect_handler=expect_continue
            )
    app.router.add_route("*", _CATCH_ALL, no_route, expect_handler=expect_continue)
