"""Process life of a service: run until SIGTERM/SIGINT, keep background loops alive, and stop
cleanly.

- ``run_until_stopped``: ``asyncio.run`` a service's ``run(stop)``; SIGTERM/SIGINT set ``stop``.
  A service that cannot start (broker or database unreachable, a database that refuses its
  user or password, port in use) exits with one line saying what and where
  (``cannot_start``), never a traceback or a password.
- ``Supervisor``: runs each background loop (reconciliation, token keep-alive, relays) as a
  task; a loop that raises is logged, counted (``mlc_background_errors_total{loop}``) and
  restarted after a capped, jittered backoff. Readiness fails while a loop keeps failing.
- ``tune_gc``: the cyclic garbage collector's thresholds (``MLC_GC_THRESHOLD``) and a freeze
  of what the process loaded before its first delivery.
- ``drain``: on stop, first the loops, then each consumer stops taking deliveries and finishes
  the ones in flight within a grace period (``MLC_SHUTDOWN_GRACE_SECONDS``, shorter than
  Kubernetes' 30 s); what is still unacked then goes back to its queue.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import random
import re
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = [
    "STARTUP_TIMEOUT",
    "DependencyRefused",
    "DependencyUnavailable",
    "Drainable",
    "Supervisor",
    "address",
    "cannot_start",
    "drain",
    "loop_factory",
    "prepare_process",
    "run_until_stopped",
    "stop_event",
    "tune_gc",
    "wait_for_dependency",
]

log = structlog.get_logger("common.runtime")

T = TypeVar("T")

#: How long a starting service waits for the broker or the database before it gives up.
STARTUP_TIMEOUT = 60.0

#: Default ports of the URL schemes a service connects to.
_DEFAULT_PORTS = {"amqp": 5672, "amqps": 5671, "postgresql": 5432, "postgres": 5432}


class DependencyUnavailable(ConnectionError):
    """The broker or the database did not answer within the startup timeout; the message
    names which and where (``host:port``), never a user or password."""


class DependencyRefused(ConnectionError):
    """The broker or the database answered but refused the credentials (a wrong password, a
    user it does not know); retrying cannot help. The message names which, where and the
    user, never the password."""


def address(url: str) -> str:
    """``host:port`` of a broker or database URL, without its user and password."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a number: say nothing rather than echo the URL
        port = None
    return f"{parts.hostname or 'localhost'}:{port or _DEFAULT_PORTS.get(parts.scheme, '?')}"


def _brief(exc: BaseException) -> str:
    """An exception as one short line, any ``scheme://user:password@`` cut out."""
    text = (str(exc).strip().splitlines() or [""])[0]
    text = re.sub(r"(\w+://)[^/@\s]*@", r"\1", text)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def wait_for_dependency(
    name: str,
    attempt: Callable[[], Awaitable[T]],
    *,
    where: str | None = None,
    retry_on: tuple[type[BaseException], ...] = (OSError, ConnectionError, TimeoutError),
    timeout: float | None = None,
) -> T:
    """``attempt()`` until it succeeds, waiting 0.5 s doubling to 5 s between tries, for at most
    ``timeout`` seconds (``STARTUP_TIMEOUT``): a service started while the broker or the
    database restarts waits for it instead of exiting (and crash-looping) at once. Then
    ``DependencyUnavailable`` naming ``name`` and ``where`` (``address(url)``)."""
    limit = STARTUP_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + limit
    delay = 0.5
    while True:
        try:
            return await attempt()
        except retry_on as exc:
            if time.monotonic() + delay > deadline:
                at = f" at {where}" if where else ""
                raise DependencyUnavailable(
                    f"the {name}{at} did not answer within {limit:g} s ({_brief(exc)})"
                ) from exc
            log.warning("dependency_unavailable", dependency=name, error=type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (Ctrl-C)."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop (libuv: less CPU per socket event than asyncio's own loop), unless
    ``MLC_EVENT_LOOP=asyncio`` asks for the standard one (e.g. to compare, or to debug)."""
    if os.environ.get("MLC_EVENT_LOOP", "uvloop") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:  # a platform without a wheel: the standard loop does the same job
        return None
    return uvloop.new_event_loop


#: Young-generation threshold and the two older ones (``gc.set_threshold``). Python's default,
#: (700, 10, 10), starts a collection every 700 net new container objects. A service holding
#: hundreds of deliveries in flight keeps most of those alive, so each collection walks them
#: and promotes them, and the older generations fill and are walked again: measured in the
#: pipeline benchmark, 4-11 % of each service's CPU went to the collector (BENCHMARKS.md).
#: At 20,000 the collector takes a third to a sixth of that, for a few MiB more held between
#: collections.
GC_THRESHOLD = (20_000, 20, 50)


def tune_gc(environ: Mapping[str, str] = os.environ) -> tuple[int, ...]:
    """Set the collector's thresholds and freeze what is loaded so far; returns the thresholds.

    ``MLC_GC_THRESHOLD`` overrides them: one to three positive integers (``20000,20,50``), or
    ``python`` to leave the collector as the interpreter set it (no thresholds, no freeze). The
    freeze (``gc.freeze``, after one full collection) moves the modules, models and templates
    loaded at start into a generation the collector never walks again. Raises ``ValueError``
    naming the variable when its value is not understood.
    """
    raw = environ.get("MLC_GC_THRESHOLD", "").strip()
    if raw.lower() == "python":
        return gc.get_threshold()
    thresholds: tuple[int, ...] = GC_THRESHOLD
    if raw:
        try:
            thresholds = tuple(int(part) for part in raw.split(","))
        except ValueError:
            thresholds = ()
        if not 1 <= len(thresholds) <= 3 or any(value < 1 for value in thresholds):
            raise ValueError(
                f"MLC_GC_THRESHOLD={raw!r}: give one to three positive integers "
                "(e.g. 20000,20,50) or 'python'"
            )
    gc.set_threshold(*thresholds)
    gc.collect()
    gc.freeze()
    return gc.get_threshold()


def prepare_process(service: str) -> None:
    """What every process does before its event loop starts (``tune_gc``); a setting it cannot
    use ends the process with one line, ``mlc-<service>: cannot start: ...``."""
    try:
        tune_gc()
    except ValueError as exc:
        structlog.get_logger(service).error("service_failed_to_start", error=str(exc))
        raise SystemExit(f"mlc-{service}: cannot start: {exc}") from None


def cannot_start(service: str, exc: OSError) -> SystemExit:
    """The exit of a service that could not start for ``exc``: logged (``service_failed_to_start``)
    and returned as a SystemExit whose message is one line, ``mlc-<service>: cannot start:
    ...``, for the operator's terminal."""
    if exc.errno == errno.EADDRINUSE:
        reason = f"the HTTP port is in use ({_brief(exc)}); free it or set MLC_HTTP_PORT"
    elif isinstance(exc, DependencyUnavailable | DependencyRefused):
        reason = str(exc)
    else:
        reason = _brief(exc)
    structlog.get_logger(service).error("service_failed_to_start", error=reason)
    return SystemExit(f"mlc-{service}: cannot start: {reason}")


def run_until_stopped(service: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """``asyncio.run`` a service's ``run(stop)`` coroutine; exit 1 with one line
    (``cannot_start``) when the broker, the database or the port is not there."""
    service_log = structlog.get_logger(service)

    async def main() -> None:
        stop = stop_event()
        await run(stop)

    prepare_process(service)
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(main())
    except OSError as exc:  # ConnectionError and DependencyUnavailable included
        raise cannot_start(service, exc) from None
    service_log.info("service_stopped")


@dataclass
class _Loop:
    name: str
    body: Callable[[], Awaitable[None]]
    task: asyncio.Task[None] | None = None
    started: float = 0.0
    failures: int = 0  # consecutive: reset once a run lasts ``healthy_after``
    last_error: str | None = None
    stopped: bool = False


@dataclass
class Supervisor:
    """Keeps background loops running. ``body`` is a coroutine function that normally never
    returns (it sleeps between passes); returning or raising both end in a restart."""

    registry: CollectorRegistry
    #: First and longest wait before a restart (seconds); doubles per consecutive failure.
    backoff: float = 1.0
    backoff_cap: float = 60.0
    #: A run that lasted this long resets the consecutive-failure count.
    healthy_after: float = 30.0
    #: Readiness fails once a loop failed this many times in a row.
    unhealthy_after: int = 3
    #: The service's stop event: a loop that returns once it is set has ended, not failed.
    service_stop: asyncio.Event | None = None
    _loops: dict[str, _Loop] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._errors = Counter(
            "mlc_background_errors_total",
            "Background loop runs that ended in an exception, by loop",
            ["loop"],
            registry=self.registry,
        )
        self._up = Gauge(
            "mlc_background_loop_up",
            "1 while a background loop runs, 0 while it waits to be restarted",
            ["loop"],
            registry=self.registry,
        )

    def start(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        loop = _Loop(name, body)
        self._loops[name] = loop
        loop.task = asyncio.create_task(self._keep(loop), name=f"supervised:{name}")

    async def _keep(self, loop: _Loop) -> None:
        while True:
            loop.started = time.monotonic()
            self._up.labels(loop=loop.name).set(1)
            try:
                await loop.body()
                if self.service_stop is not None and self.service_stop.is_set():
                    self._up.labels(loop=loop.name).set(0)
                    return
                error = "returned"
            except asyncio.CancelledError:
                self._up.labels(loop=loop.name).set(0)
                raise
            except Exception as exc:  # the supervisor's job: any failure becomes a restart
                error = type(exc).__name__
                log.error("background_loop_failed", loop=loop.name, error=error, exc_info=exc)
            self._up.labels(loop=loop.name).set(0)
            self._errors.labels(loop=loop.name).inc()
            ran = time.monotonic() - loop.started
            loop.failures = 1 if ran >= self.healthy_after else loop.failures + 1
            loop.last_error = error
            wait = min(self.backoff_cap, self.backoff * 2 ** (loop.failures - 1))
            wait *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
            log.warning("background_loop_restarting", loop=loop.name, retry_in=round(wait, 2))
            await asyncio.sleep(wait)

    async def check(self) -> None:
        """Readiness: raise while a loop has stopped or keeps failing."""
        now = time.monotonic()
        for loop in self._loops.values():
            if loop.stopped or loop.task is None or loop.task.done():
                raise RuntimeError(f"background loop {loop.name} stopped")
            recovered = now - loop.started >= self.healthy_after
            if loop.failures >= self.unhealthy_after and not recovered:
                raise RuntimeError(
                    f"background loop {loop.name} failed {loop.failures}x ({loop.last_error})"
                )

    def failures(self, name: str) -> int:
        return self._loops[name].failures

    async def stop(self) -> None:
        for loop in self._loops.values():
            loop.stopped = True
            if loop.task is not None:
                loop.task.cancel()
        tasks = [loop.task for loop in self._loops.values() if loop.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)


class Drainable(Protocol):
    @property
    def name(self) -> str: ...

    async def drain(self, grace: float) -> int: ...


async def drain(grace: float, *consumers: Drainable, supervisor: Supervisor | None = None) -> None:
    """Graceful stop: background loops first, then every consumer within ``grace`` seconds."""
    if supervisor is not None:
        await supervisor.stop()
    left = await asyncio.gather(*(c.drain(grace) for c in consumers))
    log.info(
        "service_drained",
        unfinished={c.name: n for c, n in zip(consumers, left, strict=True) if n},
        grace=grace,
    )
