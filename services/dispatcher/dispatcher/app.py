"""dispatcher's composition root."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import httpx

from common import amqp, db, health, runtime, topology
from common.contracts import ChannelCredentials, ChannelCredentialsGet
from common.metrics import ConsumerMetrics, make_registry
from common.rpc import CachedLookup, RpcClient
from dispatcher import handlers
from dispatcher.adapters.accounts import TwilioAccounts
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
            httpx.AsyncClient(base_url=settings.twilio_api_base_url, timeout=timeout)
        )
        rpc = await RpcClient.open(connection)
        credentials = CachedLookup(
            rpc,
            lambda c: ChannelCredentialsGet(connection_id=c),
            ChannelCredentials,
            ttl=settings.dispatcher_credentials_cache_seconds,
        )
        registry = make_registry()
        routes = amqp.bind(
            handlers.HANDLERS,
            claims=PostgresClaimStore(pool, stale_seconds=settings.dispatcher_claim_stale_seconds),
            notifier=TwilioNotifier(twilio, TwilioAccounts(settings, credentials)),
        )
        consumer = await amqp.run_consumer(
            channel,
            "dispatcher.sends",
            routes,
            publisher=await amqp.Publisher.open(connection),
            metrics=ConsumerMetrics.create(registry),
        )
        checks = {
            "database": health.database_check(pool),
            "broker": health.broker_check(connection),
            "consumer": consumer.check,
            "rpc": rpc.check,
        }
        await health.serve_until(
            stop, health.health_app(checks, registry), settings.http_host, settings.http_port
        )
        await runtime.drain(settings.shutdown_grace_seconds, consumer)
