"""``/healthz``, ``/readyz`` and ``/metrics`` for every service, and serving an app in-process.

``/healthz`` says the process is alive. ``/readyz`` runs each dependency check (database
``SELECT 1``, broker connection up, each consumer attached, each background loop healthy) and
answers 503 naming what failed; it turns ready again on its own once they recover.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import asyncpg
import structlog
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from prometheus_client import CollectorRegistry

from common.amqp import broker_connected
from common.metrics import metrics_view

__all__ = [
    "Check",
    "add_health_routes",
    "broker_check",
    "database_check",
    "health_app",
    "serve",
    "serve_until",
]

#: A readiness check: returns normally when the dependency answers, raises otherwise.
Check = Callable[[], Awaitable[None]]


def database_check(db: asyncpg.Pool) -> Check:
    async def check() -> None:
        async with db.acquire(timeout=2) as connection:
            await connection.fetchval("SELECT 1")

    return check


def broker_check(connection: AbstractRobustConnection) -> Check:
    """Fails while the robust connection is down or reconnecting, not only once it is closed."""

    async def check() -> None:
        if not broker_connected(connection):
            raise ConnectionError("broker connection down")

    return check


def add_health_routes(
    app: web.Application, checks: Mapping[str, Check], registry: CollectorRegistry
) -> None:
    """Add the three standard routes to ``app``."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        failed: dict[str, str] = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check(), timeout=3)
            except Exception as exc:  # a readiness probe reports every failure, whatever it is
                failed[name] = type(exc).__name__
        status = 503 if failed else 200
        return web.json_response(
            {"status": "fail" if failed else "ok", "failed": failed}, status=status
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view(registry))


def health_app(checks: Mapping[str, Check], registry: CollectorRegistry) -> web.Application:
    """A standalone app with only the standard routes (for services without an HTTP API)."""
    app = web.Application()
    add_health_routes(app, checks, registry)
    return app


@asynccontextmanager
async def serve(app: web.Application, host: str, port: int) -> AsyncIterator[int]:
    """Serve ``app`` until the block exits; yields the bound port (``port=0`` picks one)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    try:
        yield bound
    finally:
        await runner.cleanup()


async def serve_until(stop: asyncio.Event, app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` (health, metrics, any API) until ``stop`` is set: a service's last step."""
    async with serve(app, host, port) as bound:
        structlog.get_logger("common.health").info("service_started", port=bound)
        await stop.wait()
