"""Serve the simulator inside a running event loop (tests, the demo, benchmarks).

::

    async with serve(Settings()) as base_url:   # port 0 picks a free port
        ...

The bound address is read back from the runner, so ``port=0`` works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from sim_twilio.app import create_app
from sim_twilio.settings import Settings

__all__ = ["serve"]


@asynccontextmanager
async def serve(settings: Settings, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run the simulator on ``host:port`` and yield its base URL (``http://host:port``)."""
    runner = web.AppRunner(create_app(settings), shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()
