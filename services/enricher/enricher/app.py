"""enricher's composition root."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx

from common import amqp, health, topology
from common.metrics import ConsumerMetrics, make_registry
from common.rpc import RpcClient
from enricher import handlers
from enricher.adapters.exact import ExactClient
from enricher.adapters.tokens import RpcTokenSource
from enricher.settings import Settings
from enricher.templates import Renderer

__all__ = ["run"]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with AsyncExitStack() as stack:
        connection = await stack.enter_async_context(
            amqp.connect(settings.amqp_url, name="enricher")
        )
        channel = await connection.channel()
        await topology.declare(channel)
        http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=settings.enricher_exact_timeout)
        )
        tokens = RpcTokenSource(await RpcClient.open(connection))
        registry = make_registry()
        routes = amqp.bind(
            handlers.HANDLERS,
            exact=ExactClient(http, tokens),
            renderer=Renderer(),
            region=settings.enricher_default_region,
            sender_name=settings.enricher_sender_name,
        )
        await amqp.run_consumer(
            channel,
            "enricher.exact-events",
            routes,
            publisher=await amqp.Publisher.open(connection),
            metrics=ConsumerMetrics.create(registry),
        )
        checks = {"broker": health.broker_check(connection)}
        await health.serve_until(
            stop, health.health_app(checks, registry), settings.http_host, settings.http_port
        )
