"""enricher's composition root."""

from __future__ import annotations

import asyncio
import functools
from contextlib import AsyncExitStack
from datetime import timedelta

import httpx

from common import amqp, db, health, runtime, topology
from common.metrics import ConsumerMetrics, make_registry
from common.rpc import RpcClient
from enricher import handlers
from enricher.adapters.cache import DisabledCustomerCache, PostgresCustomerCache
from enricher.adapters.exact import ExactClient
from enricher.adapters.tokens import RpcTokenSource
from enricher.adapters.watermarks import PostgresWatermarks
from enricher.batching import BatchingExactReader
from enricher.customers import Customers
from enricher.governor import ExactMetrics, RateGovernor
from enricher.ports import CustomerCache
from enricher.reconcile import Reconciler
from enricher.settings import Settings
from enricher.templates import Renderer

__all__ = ["run"]


def governor(settings: Settings, metrics: ExactMetrics) -> RateGovernor:
    return RateGovernor(
        metrics=metrics,
        minutely_reserve=settings.enricher_exact_minutely_reserve,
        error_budget=settings.enricher_exact_error_budget,
        rate_limit_retries=settings.enricher_exact_rate_limit_retries,
        max_wait=settings.enricher_exact_max_wait_seconds,
    )


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(db.pool(settings.database_url))
        await db.migrate(pool, "enricher", "enricher")
        connection = await stack.enter_async_context(
            amqp.connect(settings.amqp_url, name="enricher")
        )
        channel = await connection.channel()
        await topology.declare(channel)
        http = await stack.enter_async_context(
            httpx.AsyncClient(timeout=settings.enricher_exact_timeout)
        )
        registry = make_registry()
        supervisor = runtime.Supervisor(registry)
        stack.push_async_callback(supervisor.stop)
        rpc = await RpcClient.open(connection)
        tokens = RpcTokenSource(rpc)
        client = ExactClient(
            http,
            tokens,
            governor(settings, ExactMetrics.create(registry)),
        )
        exact = BatchingExactReader(
            client,
            window=settings.enricher_batch_window_seconds,
            max_batch=settings.enricher_batch_max_keys,
        )
        stack.push_async_callback(exact.aclose)
        cache: CustomerCache = (
            PostgresCustomerCache(pool, ttl=settings.enricher_cache_ttl_seconds)
            if settings.enricher_cache_ttl_seconds > 0
            else DisabledCustomerCache()
        )
        routes = amqp.bind(
            handlers.HANDLERS,
            exact=exact,
            customers=Customers(exact, cache),
            cache=cache,
            renderer=Renderer(),
            region=settings.enricher_default_region,
            sender_name=settings.enricher_sender_name,
        )
        routes = {**routes, **handlers.PLAIN_HANDLERS}
        publisher = await amqp.Publisher.open(connection)
        consumer = await amqp.run_consumer(
            channel,
            "enricher.exact-events",
            routes,
            publisher=publisher,
            metrics=ConsumerMetrics.create(registry),
            prefetch=settings.enricher_prefetch,
        )
        if settings.enricher_reconcile_seconds > 0:
            reconciler = Reconciler(
                connections=settings.enricher_reconcile_connections,
                client_id=settings.exact_client_id,
                exact=client,
                tokens=tokens,
                watermarks=PostgresWatermarks(pool),
                publish=publisher.publish,
                lookback=timedelta(seconds=settings.enricher_reconcile_lookback_seconds),
                overlap=timedelta(seconds=settings.enricher_reconcile_overlap_seconds),
            )
            supervisor.start(
                "reconcile",
                functools.partial(reconciler.run, settings.enricher_reconcile_seconds),
            )
        checks = {
            "database": health.database_check(pool),
            "broker": health.broker_check(connection),
            "consumer": consumer.check,
            "rpc": rpc.check,
            "background": supervisor.check,
        }
        await health.serve_until(
            stop, health.health_app(checks, registry), settings.http_host, settings.http_port
        )
        await runtime.drain(settings.shutdown_grace_seconds, consumer, supervisor=supervisor)
