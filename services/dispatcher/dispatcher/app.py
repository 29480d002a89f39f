"""dispatcher's composition root."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx

from common import amqp, db, health, topology
from common.metrics import ConsumerMetrics, make_registry
from dispatcher import handlers
from dispatcher.adapters.claims import PostgresClaimStore
from dispatcher.adapters.twilio import TwilioNotifier
from dispatcher.settings import Settings

__all__ = ["run"]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(db.pool(settings.database_url))
        await db.migrate(pool, "dispatch", "dispatcher")
        connection = await stack.enter_async_context(
            amqp.connect(settings.amqp_url, name="dispatcher")
        )
        channel = await connection.channel()
        await topology.declare(channel)
        timeout = httpx.Timeout(
            settings.dispatcher_read_timeout, connect=settings.dispatcher_connect_timeout
        )
        twilio = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=settings.twilio_api_base_url,
                auth=httpx.BasicAuth(*settings.twilio_credentials()),
                timeout=timeout,
            )
        )
        registry = make_registry()
        routes = amqp.bind(
            handlers.HANDLERS,
            claims=PostgresClaimStore(pool, stale_seconds=settings.dispatcher_claim_stale_seconds),
            notifier=TwilioNotifier(
                twilio,
                account_sid=settings.twilio_account_sid,
                messaging_service_sid=settings.twilio_messaging_service_sid,
                status_callback=settings.public_base_url.rstrip("/") + "/webhooks/twilio/status",
            ),
        )
        await amqp.run_consumer(
            channel,
            "dispatcher.sends",
            routes,
            publisher=await amqp.Publisher.open(connection),
            metrics=ConsumerMetrics.create(registry),
        )
        checks = {
            "database": health.database_check(pool),
            "broker": health.broker_check(connection),
        }
        await health.serve_until(
            stop, health.health_app(checks, registry), settings.http_host, settings.http_port
        )
