"""enricher's composition root."""

from __future__ import annotations

import asyncio
import functools
from contextlib import AsyncExitStack

import httpx
import structlog

from common import amqp, health, topology
from common.metrics import ConsumerMetrics, make_registry
from common.rpc import RpcClient
from enricher import handlers
from enricher.adapters.exact import ExactClient
from enricher.adapters.tokens import RpcTokenSource
from enricher.settings import Settings
from enricher.templates import Renderer

__all__ = ["run"]

log = structlog.get_logger("enricher")


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
        handle = functools.partial(
            handlers.handle_exact_event,
            exact=ExactClient(http, tokens),
            renderer=Renderer(),
            region=settings.enricher_default_region,
            sender_name=settings.enricher_sender_name,
        )
        registry = make_registry()
        model = handlers.HANDLERS["exact."][0]
        await amqp.run_consumer(
            channel,
            "enricher.exact-events",
            {"exact.": (model, handle)},
            publisher=await amqp.Publisher.open(connection),
            metrics=ConsumerMetrics.create(registry),
        )
        checks = {"broker": health.broker_check(connection)}
        await stack.enter_async_context(
            health.serve(
                health.health_app(checks, registry), settings.http_host, settings.http_port
            )
        )
        log.info("service_started", port=settings.http_port)
        await stop.wait()
