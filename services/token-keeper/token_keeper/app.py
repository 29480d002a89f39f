"""token-keeper's composition root: the only place that opens anything."""

from __future__ import annotations

import asyncio
import functools
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import httpx
import structlog
from prometheus_client import CollectorRegistry, Counter

from common import amqp, db, health, runtime, topology
from common.crypto import Sealer
from common.metrics import make_registry
from common.rpc import serve_rpc
from token_keeper import handlers
from token_keeper.adapters.exact_oauth import ExactTokenEndpoint
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.handlers import Clock
from token_keeper.housekeeping import Housekeeping
from token_keeper.settings import Settings

__all__ = ["run"]

log = structlog.get_logger("token-keeper")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def security_events(registry: CollectorRegistry) -> Counter:
    """``mlc_security_events_total{kind}``: requests refused as a probe for secrets would be
    (``rpc_forbidden``: an RPC from a user not allowed to ask it)."""
    return Counter(
        "mlc_security_events_total",
        "Requests refused for security reasons, by kind",
        ["kind"],
        registry=registry,
    )


async def _sealed_secrets_open(store: PostgresConnectionStore) -> None:
    """Readiness: not ready while a connection's secrets do not open (a replica started with
    another key sealed them, or a key was dropped before the reseal)."""
    if problem := await store.unopenable():
        raise RuntimeError(problem)


async def run(settings: Settings, stop: asyncio.Event, clock: Clock = _utcnow) -> None:
    """Serve token RPCs until ``stop``. ``clock`` is Exact's notion of now (tests that
    accelerate the simulator's clock pass the same one here)."""
    if settings.secret_key is None:
        raise SystemExit("MLC_SECRET_KEY is required: token-keeper seals tokens with it")
    try:
        sealer = Sealer(settings.secret_key)
    except ValueError:  # Fernet's message; never the key
        raise SystemExit(
            "mlc-token-keeper: cannot start: MLC_SECRET_KEY is not a comma-separated list of "
            "Fernet keys (32 url-safe base64-encoded bytes each)"
        ) from None
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(
            db.pool(settings.database_url, max_size=settings.db_pool_max)
        )
        await db.migrate(pool, "tokens", "token_keeper")
        store = PostgresConnectionStore(pool, sealer)
        # without MLC_EXACT_REFRESH_TOKEN there is no default connection: `mlc connect` adds one
        inserted = bool(settings.needed_credentials()) and await store.ensure(
            id=settings.exact_connection_id,
            base_url=settings.exact_base_url,
            client_id=settings.exact_client_id,
            client_secret=settings.exact_client_secret.get_secret_value(),
            webhook_secret=settings.exact_webhook_secret.get_secret_value(),
            division=settings.exact_division,
            refresh_token=settings.exact_refresh_token.get_secret_value(),
        )
        if inserted:
            log.info("connection_configured", connection_id=settings.exact_connection_id)
        if problem := await store.unopenable():
            raise SystemExit(f"mlc-token-keeper: cannot start: {problem}")
        connection = await stack.enter_async_context(
            amqp.connect(settings.amqp_url, name="token-keeper")
        )
        channel = await connection.channel()
        await topology.declare_for(channel, "token-keeper")
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=15))
        endpoint = ExactTokenEndpoint(client)
        publisher = await amqp.Publisher.open(connection, max_batch=settings.publish_batch_max)
        policy = settings.policy()
        registry = make_registry()
        consumer = await serve_rpc(
            channel,
            handlers.routes(store=store, endpoint=endpoint, policy=policy, clock=clock),
            publisher,
            allowed=settings.rpc_authorization(),
            security_events=security_events(registry),
        )
        housekeeping = Housekeeping(store, endpoint, policy, clock, registry)
        supervisor = runtime.Supervisor(registry)
        stack.push_async_callback(supervisor.stop)
        supervisor.start(
            "housekeeping",
            functools.partial(housekeeping.run, settings.token_keeper_housekeeping_seconds),
        )
        checks: dict[str, health.Check] = {
            "database": health.database_check(pool),
            "broker": health.broker_check(connection),
            "consumer": consumer.check,
            "background": supervisor.check,
            "secrets": functools.partial(_sealed_secrets_open, store),
        }
        await health.serve_until(
            stop, health.health_app(checks, registry), settings.http_host, settings.http_port
        )
        await runtime.drain(settings.shutdown_grace_seconds, consumer, supervisor=supervisor)
