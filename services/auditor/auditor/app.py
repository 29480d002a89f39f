"""auditor's composition root."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from auditor import api, handlers
from auditor.adapters.trail import PostgresTrail
from auditor.settings import Settings
from common import amqp, db, health, runtime, topology
from common.metrics import ConsumerMetrics, make_registry

__all__ = ["run"]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(db.pool(settings.database_url))
        await db.migrate(pool, "audit", "auditor")
        trail = PostgresTrail(pool)
        connection = await stack.enter_async_context(
            amqp.connect(settings.amqp_url, name="auditor")
        )
        channel = await connection.channel()
        await topology.declare(channel)
        registry = make_registry()
        routes = amqp.bind(handlers.HANDLERS, trail=trail)
        consumer = await amqp.run_consumer(
            channel,
            "auditor.events",
            routes,
            publisher=await amqp.Publisher.open(connection),
            metrics=ConsumerMetrics.create(registry),
        )
        checks = {
            "database": health.database_check(pool),
            "broker": health.broker_check(connection),
            "consumer": consumer.check,
        }
        app = health.health_app(checks, registry)
        app[api.TRAIL] = trail
        app.router.add_get("/trail", api.trail_view)
        await health.serve_until(stop, app, settings.http_host, settings.http_port)
        await runtime.drain(settings.shutdown_grace_seconds, consumer)
