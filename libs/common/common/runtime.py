"""Process life of a service: run until SIGTERM/SIGINT, then stop cleanly."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import structlog

__all__ = ["run_until_stopped", "stop_event"]


def stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (Ctrl-C)."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


def run_until_stopped(service: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """``asyncio.run`` a service's ``run(stop)`` coroutine; exit 1 with a log line on a crash."""
    log = structlog.get_logger(service)

    async def main() -> None:
        stop = stop_event()
        await run(stop)

    try:
        asyncio.run(main())
    except (OSError, ConnectionError) as exc:
        log.error("service_failed_to_start", error=str(exc))
        raise SystemExit(1) from exc
    log.info("service_stopped")
