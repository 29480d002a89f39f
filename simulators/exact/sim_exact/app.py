"""Composition root: ``create_app(settings)`` wires every part of one simulator instance."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from common.health import add_health_routes
from common.metrics import make_registry
from sim_exact import admin, api, control, sync, token_endpoint
from sim_exact.calls import CallLog
from sim_exact.clock import Clock
from sim_exact.documents import Documents
from sim_exact.faults import Faults
from sim_exact.metrics import SimMetrics
from sim_exact.oauth import OAuth
from sim_exact.pipeline import api_pipeline
from sim_exact.ratelimit import ErrorTracker, RateLimiter
from sim_exact.seed import seed
from sim_exact.settings import Settings
from sim_exact.state import SIMULATOR, Simulator
from sim_exact.store import Store
from sim_exact.webhooks import Webhooks

__all__ = ["create_app"]


def _build(settings: Settings) -> Simulator:
    clock = Clock(settings.clock_speed)
    registry = make_registry()
    metrics = SimMetrics.create(registry)
    store = Store(clock)
    documents = Documents(store, clock)
    seeded = seed(store, documents, settings.exact_division)
    webhooks = Webhooks(
        store=store,
        clock=clock,
        metrics=metrics,
        client_id=settings.exact_client_id,
        secret=settings.exact_webhook_secret.get_secret_value(),
        public_url=settings.public_url,
        attempts=settings.webhook_attempts,
        timeout_seconds=settings.webhook_timeout_seconds,
    )
    store.listeners.append(webhooks.changed)
    return Simulator(
        settings=settings,
        clock=clock,
        store=store,
        documents=documents,
        seed=seeded,
        oauth=OAuth(
            clock,
            client_id=settings.exact_client_id,
            client_secret=settings.exact_client_secret.get_secret_value(),
            initial_refresh_token=settings.exact_refresh_token.get_secret_value(),
        ),
        limiter=RateLimiter(
            clock, minutely_limit=settings.minutely_limit, daily_limit=settings.daily_limit
        ),
        errors=ErrorTracker(clock, limit=settings.error_block_limit, enabled=settings.error_block),
        faults=Faults(),
        calls=CallLog(),
        webhooks=webhooks,
        registry=registry,
        metrics=metrics,
    )


async def _webhook_delivery(app: web.Application) -> AsyncIterator[None]:
    """The HTTP client webhooks go out through; in-flight deliveries end with the app."""
    sim = app[SIMULATOR]
    async with aiohttp.ClientSession() as session:
        sim.webhooks.open(session)
        control.subscribe_callback_url(sim)
        yield
        await sim.webhooks.close()


def create_app(settings: Settings) -> web.Application:
    """The simulator as an aiohttp application, with fresh state and seed data."""
    sim = _build(settings)
    app = web.Application(middlewares=[api_pipeline])
    app[SIMULATOR] = sim
    app.cleanup_ctx.append(_webhook_delivery)
    add_health_routes(app, {}, sim.registry)
    token_endpoint.add_routes(app)
    sync.add_routes(app)  # before api's: /sync/Deleted would match its generic route
    api.add_routes(app)
    admin.add_routes(app)
    control.add_routes(app)
    return app
