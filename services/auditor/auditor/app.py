"""auditor's composition root."""

from __future__ import annotations

import asyncio
import functools
from contextlib import AsyncExitStack

from auditor import api, handlers, retention, schema, status_checks
from auditor.adapters.trail import (
    PostgresTrail,
    outcome_counter,
    security_counter,
    status_counter,
    suppression_counter,
)
from auditor.personal import PersonalData
from auditor.settings import Settings
from common import amqp, db, health, runtime, topology
from common.groupcommit import GroupCommit
from common.metrics import ConsumerMetrics, make_registry

__all__ = ["run"]


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with AsyncExitStack() as stack:
        data = PersonalData(settings.auditor_data_key)
        pool = await stack.enter_async_context(
            db.pool(settings.database_url, max_size=settings.db_pool_max)
        )
        await schema.migrate(pool, data)
        registry = make_registry()
        trail = PostgresTrail(
            pool,
            data=data,
            outcomes=outcome_counter(registry),
            statuses=status_counter(registry),
            suppressions=suppression_counter(registry),
            security=security_counter(registry),
            group=GroupCommit(pool, max_batch=settings.auditor_group_commit_max),
        )
        connection = await stack.enter_async_context(
            amqp.connect(settings.amqp_url, name="auditor")
        )
        channel = await connection.channel()
        await topology.declare_for(channel, "auditor")
        routes = handlers.routes(trail=trail, client_id=settings.exact_client_id)
        publisher = await amqp.Publisher.open(connection, max_batch=settings.publish_batch_max)
        consumer = await amqp.run_consumer(
            channel,
            "auditor.events",
            routes,
            publisher=publisher,
            metrics=ConsumerMetrics.create(registry),
            prefetch=settings.auditor_prefetch,
        )
        supervisor = runtime.Supervisor(registry, service_stop=stop)
        stack.push_async_callback(supervisor.stop)
        supervisor.start(
            "status-checks",
            functools.partial(
                status_checks.check_forever,
                pool,
                publisher,
                stop,
                after_seconds=settings.auditor_status_check_after_seconds,
                max_checks=settings.auditor_status_checks_max,
                interval=settings.auditor_status_check_interval_seconds,
            ),
        )
        if settings.auditor_retention_days:
            supervisor.start(
                "retention",
                functools.partial(
                    retention.purge_forever,
                    trail,
                    stop,
                    days=settings.auditor_retention_days,
                    interval=settings.auditor_retention_interval_seconds,
                ),
            )
        checks = {
            "database": health.database_check(pool),
            "broker": health.broker_check(connection),
            "consumer": consumer.check,
            "background": supervisor.check,
        }
        app = health.health_app(checks, registry)
        app[api.TRAIL] = trail
        app[api.PUBLISHER] = publisher
        app[api.ADMIN_TOKEN] = settings.auditor_admin_token
        app[api.READ_TOKEN] = settings.auditor_read_token
        app[api.CLIENT_ID] = settings.exact_client_id
        api.add_routes(app)
        await health.serve_until(stop, app, settings.http_host, settings.http_port)
        await runtime.drain(settings.shutdown_grace_seconds, consumer, supervisor=supervisor)
