"""enricher's composition root."""

from __future__ import annotations

import asyncio
import functools
import signal
from contextlib import AsyncExitStack
from datetime import timedelta

import httpx
import structlog

from common import amqp, db, health, runtime, topology
from common.contracts import ExactWebhookReceived, PaymentReceived
from common.groupcommit import GroupCommit
from common.metrics import ConsumerMetrics, make_registry
from common.rpc import RpcClient
from enricher import handlers, privacy, suppressions
from enricher.adapters.cache import DisabledCustomerCache, PostgresCustomerCache
from enricher.adapters.exact import ExactClient
from enricher.adapters.notices import PostgresNotices, PostgresPreferences
from enricher.adapters.ratelimits import PostgresRateLimits
from enricher.adapters.tokens import RpcConnections, RpcTokenSource
from enricher.adapters.watermarks import PostgresWatermarks
from enricher.batching import BatchingExactReader
from enricher.customers import Customers
from enricher.decisions import Decider, NoticeMetrics
from enricher.governor import ExactMetrics, RateGovernor, RateLimitStore
from enricher.ports import CustomerCache, ExactBulkReader
from enricher.reconcile import Reconciler
from enricher.rulebook import RuleBook
from enricher.schedule import Scheduler
from enricher.settings import Settings
from enricher.sync import SyncReader
from enricher.texts import Texts

log = structlog.get_logger("enricher")

__all__ = ["run"]


def governor(settings: Settings, metrics: ExactMetrics, store: RateLimitStore) -> RateGovernor:
    return RateGovernor(
        metrics=metrics,
        store=store,
        minutely_reserve=settings.enricher_exact_minutely_reserve,
        minutely_burst=settings.enricher_exact_minutely_burst,
        error_budget=settings.enricher_exact_error_budget,
        rate_limit_retries=settings.enricher_exact_rate_limit_retries,
        max_wait=settings.enricher_exact_max_wait_seconds,
    )


def reload_rules(rulebook: RuleBook, decider: Decider) -> None:
    """SIGHUP: read the rules files again (a file with errors keeps its last good version)
    and the divisions' names from Exact on next use."""
    decider.forget_companies()
    errors = rulebook.reload()
    for error in errors:
        log.error("rules_rejected", error=error)
    log.info("rules_reloaded", rejected=len(errors))


async def run(settings: Settings, stop: asyncio.Event) -> None:
    # A broken rules file stops the start here, before anything is consumed.
    rulebook = RuleBook(settings.enricher_rules_path)
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            db.pool(settings.database_url, max_size=settings.db_pool_max)
        )
        await db.migrate(pool, "enricher", "enricher")
        connection = await stack.enter_async_context(
            amqp.connect(settings.amqp_url, name="enricher")
        )
        channel = await connection.channel()
        await topology.declare_for(channel, "enricher")
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
            governor(
                settings,
                ExactMetrics.create(registry),
                # one budget and one turn per division for every replica; a turn outlasts a
                # call (the HTTP timeout applies per phase: connect, send, read)
                PostgresRateLimits(pool, lease=2 * settings.enricher_exact_timeout),
            ),
            max_terms=settings.enricher_exact_filter_terms,
        )
        bulk: ExactBulkReader = client
        if settings.enricher_exact_sync:
            bulk = SyncReader(
                client,
                client,
                lookback=timedelta(seconds=settings.enricher_exact_sync_lookback_seconds),
                max_age=timedelta(seconds=settings.enricher_exact_sync_max_age_seconds),
                max_rows=settings.enricher_exact_sync_max_rows,
            )
        exact = BatchingExactReader(
            bulk,
            window=settings.enricher_batch_window_seconds,
            max_batch=settings.enricher_batch_max_keys,
        )
        stack.push_async_callback(exact.aclose)
        cache: CustomerCache = (
            PostgresCustomerCache(pool, ttl=settings.enricher_cache_ttl_seconds)
            if settings.enricher_cache_ttl_seconds > 0
            else DisabledCustomerCache()
        )
        notices = PostgresNotices(pool, group=GroupCommit(pool))
        notice_metrics = NoticeMetrics.create(registry)
        decider = Decider(
            exact=exact,
            filtered=client,
            customers=Customers(exact, cache),
            rulebook=rulebook,
            texts=Texts(),
            notices=notices,
            preferences=PostgresPreferences(pool),
            metrics=notice_metrics,
        )
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, functools.partial(reload_rules, rulebook, decider))
        stack.callback(loop.remove_signal_handler, signal.SIGHUP)
        routes: amqp.Routes = {
            "exact.": (
                ExactWebhookReceived,
                functools.partial(handlers.handle_exact_event, decider=decider, cache=cache),
            ),
            PaymentReceived.routing_key: (
                PaymentReceived,
                functools.partial(handlers.payment_received, decider=decider),
            ),
        }
        publisher = await amqp.Publisher.open(connection, max_batch=settings.publish_batch_max)
        consumer_metrics = ConsumerMetrics.create(registry)
        consumer = await amqp.run_consumer(
            channel,
            "enricher.exact-events",
            routes,
            publisher=publisher,
            metrics=consumer_metrics,
            prefetch=settings.enricher_prefetch,
        )
        # its own channel: the prefetch (basic.qos) is per channel
        suppressed = await amqp.run_consumer(
            await connection.channel(),
            suppressions.QUEUE,
            {
                **suppressions.routes(notices, rulebook, notice_metrics),
                **privacy.routes(cache, notices, PostgresPreferences(pool)),
            },
            publisher=publisher,
            metrics=consumer_metrics,
            prefetch=settings.enricher_prefetch,
        )
        if settings.enricher_reconcile_seconds > 0:
            reconciler = Reconciler(
                connections=RpcConnections(rpc),
                client_id=settings.exact_client_id,
                exact=client,
                watermarks=PostgresWatermarks(pool),
                publish=publisher.publish,
                lookback=timedelta(seconds=settings.enricher_reconcile_lookback_seconds),
                overlap=timedelta(seconds=settings.enricher_reconcile_overlap_seconds),
            )
            supervisor.start(
                "reconcile",
                functools.partial(reconciler.run, settings.enricher_reconcile_seconds),
            )
        if settings.enricher_schedule_seconds > 0:
            scheduler = Scheduler(
                decider, notices, publisher.publish, batch=settings.enricher_schedule_batch
            )
            supervisor.start(
                "schedule",
                functools.partial(scheduler.run, settings.enricher_schedule_seconds),
            )
        checks = {
            "database": health.database_check(pool),
            "broker": health.broker_check(connection),
            "consumer": consumer.check,
            "suppressions": suppressed.check,
            "rpc": rpc.check,
            "background": supervisor.check,
        }
        await health.serve_until(
            stop, health.health_app(checks, registry), settings.http_host, settings.http_port
        )
        await runtime.drain(
            settings.shutdown_grace_seconds, consumer, suppressed, supervisor=supervisor
        )
