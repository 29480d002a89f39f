"""dispatcher's composition root."""

from __future__ import annotations

import asyncio
import functools
from contextlib import AsyncExitStack

from common import amqp, db, health, runtime, topology
from common.contracts import (
    ChannelCredentials,
    ChannelCredentialsGet,
)
from common.groupcommit import GroupCommit
from common.metrics import ConsumerMetrics, make_registry
from common.rpc import CachedLookup, RpcClient
from dispatcher import feeds, handlers, outbox, resolver
from dispatcher.adapters.accounts import EmailAccounts, TwilioAccounts
from dispatcher.adapters.channels import ChannelNotifier
from dispatcher.adapters.claims import PostgresClaimStore
from dispatcher.adapters.http import HttpClient
from dispatcher.adapters.pacing import Pacer
from dispatcher.adapters.sendgrid import SendGridNotifier
from dispatcher.adapters.suppressions import PostgresSuppressions
from dispatcher.adapters.twilio import TwilioNotifier
from dispatcher.metrics import DispatchMetrics
from dispatcher.settings import Settings

__all__ = ["run"]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    for vendor in (settings.twilio_api_base_url, settings.sendgrid_api_base_url):
        if problem := settings.public_url_problem(vendor):
            # a real vendor's status callbacks would go nowhere: refuse to send blind
            raise SystemExit(f"mlc-dispatcher: cannot start: {problem}")
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            db.pool(settings.database_url, max_size=settings.db_pool_max)
        )
        await db.migrate(pool, "dispatch", "dispatcher")
        connection = await stack.enter_async_context(
            amqp.connect(settings.amqp_url, name="dispatcher")
        )
        channel = await connection.channel()
        await topology.declare_for(channel, "dispatcher")
        twilio = await stack.enter_async_context(
            HttpClient(
                settings.twilio_api_base_url,
                connect_timeout=settings.dispatcher_connect_timeout,
                read_timeout=settings.dispatcher_read_timeout,
            )
        )
        sendgrid = await stack.enter_async_context(
            HttpClient(
                settings.sendgrid_api_base_url,
                connect_timeout=settings.dispatcher_connect_timeout,
                read_timeout=settings.dispatcher_read_timeout,
            )
        )
        rpc = await RpcClient.open(connection)
        credentials = CachedLookup(
            rpc,
            lambda c: ChannelCredentialsGet(connection_id=c),
            ChannelCredentials,
            ttl=settings.dispatcher_credentials_cache_seconds,
        )
        registry = make_registry()
        dispatch_metrics = DispatchMetrics.create(registry)
        wake = asyncio.Event()
        claims = PostgresClaimStore(
            pool,
            stale_seconds=settings.dispatcher_claim_stale_seconds,
            resolve_after_seconds=settings.dispatcher_resolve_after_seconds,
            wake=wake,
            group=GroupCommit(pool, max_batch=settings.dispatcher_group_commit_max),
        )
        twilio_notifier = TwilioNotifier(
            twilio,
            TwilioAccounts(settings, credentials),
            pacer=Pacer(
                rate=settings.dispatcher_twilio_rate,
                burst=settings.dispatcher_twilio_burst,
                concurrency=settings.dispatcher_twilio_concurrency,
                max_wait=settings.pacing_max_wait,
                waited=dispatch_metrics.pacing_seconds,
            ),
        )
        notifier = ChannelNotifier(
            {
                "sms": twilio_notifier,
                "voice": twilio_notifier,
                "email": SendGridNotifier(
                    sendgrid,
                    EmailAccounts(settings, credentials),
                    resolve_after=settings.dispatcher_email_resolve_seconds,
                    pacer=Pacer(
                        rate=settings.dispatcher_sendgrid_rate,
                        burst=settings.dispatcher_sendgrid_burst,
                        concurrency=settings.dispatcher_sendgrid_concurrency,
                        max_wait=settings.pacing_max_wait,
                        waited=dispatch_metrics.pacing_seconds,
                    ),
                ),
            },
            latency=dispatch_metrics.provider_seconds,
            credentials_refused=dispatch_metrics.credentials_refused,
        )
        suppressions = PostgresSuppressions(pool, wake=wake)
        routes = handlers.routes(
            claims=claims,
            notifier=notifier,
            max_attempts=settings.dispatcher_max_attempts,
            suppressions=suppressions,
        )
        publisher = await amqp.Publisher.open(connection, max_batch=settings.publish_batch_max)
        consumer_metrics = ConsumerMetrics.create(registry)
        consumer = await amqp.run_consumer(
            channel,
            "dispatcher.sends",
            routes,
            publisher=publisher,
            metrics=consumer_metrics,
            prefetch=settings.dispatcher_prefetch,
        )
        feed_consumer = await amqp.run_consumer(
            await connection.channel(),
            "dispatcher.suppressions",
            feeds.routes(suppressions=suppressions, claims=claims),
            publisher=publisher,
            metrics=consumer_metrics,
        )
        # Background loops: the outbox relay and the resolver of unsettled claims, kept alive
        # by the supervisor; each ends by itself once ``stop`` is set.
        supervisor = runtime.Supervisor(registry, service_stop=stop)
        stack.push_async_callback(supervisor.stop)
        relay_publisher = await amqp.Publisher.open(
            connection, max_batch=settings.publish_batch_max
        )
        supervisor.start(
            "outbox-relay",
            functools.partial(
                outbox.relay_forever,
                pool,
                relay_publisher,
                wake,
                stop,
                poll_seconds=settings.dispatcher_outbox_poll_seconds,
                metrics=dispatch_metrics,
                command_days=settings.dispatcher_command_retention_days,
            ),
        )
        supervisor.start(
            "claim-resolver",
            functools.partial(
                resolver.resolve_forever,
                stop,
                claims=claims,
                notifier=notifier,
                max_attempts=settings.dispatcher_max_attempts,
                interval=settings.dispatcher_resolve_interval_seconds,
                suppressions=suppressions,
                metrics=dispatch_metrics,
            ),
        )
        checks = {
            "database": health.database_check(pool),
            "broker": health.broker_check(connection),
            "consumer": consumer.check,
            "feed_consumer": feed_consumer.check,
            "rpc": rpc.check,
            "background": supervisor.check,
        }
        await health.serve_until(
            stop, health.health_app(checks, registry), settings.http_host, settings.http_port
        )
        await runtime.drain(
            settings.shutdown_grace_seconds, consumer, feed_consumer, supervisor=supervisor
        )
