"""Serving the simulator: in-process for tests (``running``) and as a process (``run``)."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from aiohttp import web

from sim_exact.app import create_app
from sim_exact.settings import Settings
from sim_exact.state import SIMULATOR, Simulator

__all__ = ["RunningSimulator", "run", "running"]

_log = structlog.get_logger("sim_exact")


@dataclass(frozen=True)
class RunningSimulator:
    """A started simulator: its base URL and its state (for in-process assertions)."""

    url: str
    app: web.Application

    @property
    def state(self) -> Simulator:
        return self.app[SIMULATOR]


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[RunningSimulator]:
    """Serve the simulator on ``settings.http_host``/``http_port`` (0 picks a free port).

    Unless ``public_url`` was given, it becomes the bound address, so webhook endpoints point
    back at this instance.
    """
    sock = _bind(settings.http_host, settings.http_port)
    port = sock.getsockname()[1]
    host = settings.http_host if settings.http_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    if "public_url" not in settings.model_fields_set:
        settings = settings.model_copy(update={"public_url": f"http://{host}:{port}"})
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield RunningSimulator(f"http://{host}:{port}", app)
    finally:
        await runner.cleanup()
        sock.close()


async def run(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running(settings) as simulator:
        _log.info("simulator_started", url=simulator.url, division=settings.exact_division)
        await stop.wait()
    _log.info("simulator_stopped")
