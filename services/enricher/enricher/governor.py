"""RateGovernor: keeps the enricher inside Exact Online's call limits, per (connection, division).

Exact counts calls per app and company (division): 60 per calendar minute and 5,000 per day,
and answers 429 past either. It also blocks an endpoint for the rest of the hour after 10 error
responses (400/401/403/404...; 429 does not count), escalating on repeat. So every call goes
through ``call``::

    one call at a time per (connection, division)   Exact: no parallel requests to one company
      │
      ├─ endpoint's errors this hour ≥ budget ─────▶ TransientError(retry_after = end of hour)
      ├─ daily remaining ≤ reserve, before reset ──▶ TransientError(retry_after = daily reset)
      ├─ minutely remaining ≤ reserve, before reset ▶ wait until the reset, then call
      ├─ past the minute's burst ─────────────────▶ wait for the call's even share of the rest
      │
    send ─▶ read the six X-RateLimit-* headers (resets in epoch ms; any may be missing)
      ├─ 429 ─▶ wait until the exhausted window resets and send again (bounded; not an error)
      ├─ other 4xx ─▶ count against the endpoint's hourly budget
      └─ return the response (the caller classifies it)

A division's minute is spent evenly past its first ``minutely_burst`` calls, up to its reset:
a caller that reads as often as webhooks arrive would otherwise spend the minute's 60 calls in
its first seconds and then wait up to a minute with nothing read. The wait needs only the
last answer's remaining count and reset, so replicas sharing the windows pace alike.

The turn to call, the windows last read and the error counts live in a ``RateLimitStore``:
``LocalRateLimits`` (this process only, the default) or ``PostgresRateLimits``
(``enricher.adapters.ratelimits``), which every replica shares, so two replicas spend one
error budget and pace on one division's windows. The headers carry what other callers used,
which is why the pacing follows them rather than a local count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from common.errors import TransientError

__all__ = [
    "ExactMetrics",
    "LocalRateLimits",
    "RateGovernor",
    "RateLimitStore",
    "Response",
    "Turn",
    "Window",
    "Windows",
]

_MINUTE = 60.0
_HOUR = 3600.0


class Response(Protocol):
    """What the governor reads of an HTTP response (``httpx.Response`` fits)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


R = TypeVar("R", bound=Response)


@dataclass(frozen=True)
class ExactMetrics:
    """``mlc_exact_requests_total{endpoint,status}``, ``mlc_exact_ratelimit_remaining{connection,
    window}`` (window: minutely | daily)."""

    requests: Counter
    remaining: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ExactMetrics:
        return cls(
            Counter(
                "mlc_exact_requests_total",
                "Exact API requests, by resource path and HTTP status",
                ["endpoint", "status"],
                registry=registry,
            ),
            Gauge(
                "mlc_exact_ratelimit_remaining",
                "Calls left in Exact's current window, as its last answer said",
                ["connection", "window"],
                registry=registry,
            ),
        )


@dataclass
class Window:
    """One of Exact's windows as its last answer told: calls left and when it resets."""

    remaining: int | None = None
    reset: float | None = None  # epoch seconds
    limit: int | None = None  # the window's size, when the answer said (not kept in a store)

    def until_reset(self, now: float, reserve: int) -> float | None:
        """Seconds to the reset while the window is down to ``reserve`` calls, else None."""
        if self.remaining is None or self.remaining > reserve or self.reset is None:
            return None
        return self.reset - now if now < self.reset else None

    def share_wait(self, now: float, reserve: int, burst: int, default_limit: int) -> float:
        """Seconds until the next call is within the minute's even pace: the first ``burst``
        calls of a window go at once, the rest are spread over the whole window, so that at
        ``t`` seconds before the reset at least ``(usable - burst) * t / 60`` stay unspent
        and the last one is made at the reset, not long before it."""
        if self.remaining is None or self.reset is None or not now < self.reset:
            return 0.0
        paced = (self.limit or default_limit) - reserve - burst
        if paced <= 0:
            return 0.0
        left = min(self.reset - now, _MINUTE)
        after = self.remaining - reserve - 1  # usable calls left once this one is made
        return max(left - max(after, 0) * _MINUTE / paced, 0.0)


@dataclass
class Windows:
    """A division's two windows (per app and division, as Exact counts)."""

    minutely: Window = field(default_factory=Window)
    daily: Window = field(default_factory=Window)


class Turn(Protocol):
    """The right to call one division, held until the block that took it ends. Changes to
    ``windows`` made in the block are kept when it ends."""

    @property
    def windows(self) -> Windows: ...

    async def keep(self, seconds: float) -> None:
        """Hold the turn ``seconds`` longer than a call alone would (before a wait in it)."""


class RateLimitStore(Protocol):
    """Where the governor keeps each division's turn, windows and hourly error counts.
    ``hour`` is the hour number since the epoch (UTC)."""

    def turn(self, connection_id: str, division: int) -> AbstractAsyncContextManager[Turn]:
        """Wait for the division's turn (one call at a time) and hold it in the block."""
        ...

    async def errors(self, connection_id: str, division: int, endpoint: str, hour: int) -> int:
        """Error responses counted for ``endpoint`` in ``hour``."""
        ...

    async def add_error(self, connection_id: str, division: int, endpoint: str, hour: int) -> int:
        """Count one more error response; returns the hour's count including it."""
        ...


@dataclass
class _LocalTurn:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    windows: Windows = field(default_factory=Windows)

    async def keep(self, seconds: float) -> None:
        """A lock held by a live task needs no renewal."""


class LocalRateLimits:
    """This process's calls only: a lock and counters in memory. Enough for one replica;
    replicas that share a key need ``PostgresRateLimits``."""

    def __init__(self) -> None:
        self._turns: dict[tuple[str, int], _LocalTurn] = {}
        #: (connection, division, endpoint) -> (hour, errors counted in it)
        self._errors: dict[tuple[str, int, str], tuple[int, int]] = {}

    @asynccontextmanager
    async def turn(self, connection_id: str, division: int) -> AsyncIterator[Turn]:
        state = self._turns.setdefault((connection_id, division), _LocalTurn())
        async with state.lock:
            yield state

    async def errors(self, connection_id: str, division: int, endpoint: str, hour: int) -> int:
        counted_hour, count = self._errors.get((connection_id, division, endpoint), (hour, 0))
        return count if counted_hour == hour else 0

    async def add_error(self, connection_id: str, division: int, endpoint: str, hour: int) -> int:
        count = await self.errors(connection_id, division, endpoint, hour) + 1
        self._errors[(connection_id, division, endpoint)] = (hour, count)
        return count


def _header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


class RateGovernor:
    """Paces and counts Exact calls; see the module docstring for the rules.

    ``clock`` (epoch seconds) and ``sleep`` are injectable so the rules can be tested without
    waiting. ``store`` shares the limits between replicas (default: this process's only).
    """

    def __init__(
        self,
        *,
        metrics: ExactMetrics | None = None,
        minutely_reserve: int = 2,
        minutely_burst: int = 10,
        minutely_limit: int = 60,
        daily_reserve: int = 0,
        error_budget: int = 8,
        rate_limit_retries: int = 3,
        max_wait: float = 65.0,
        reset_margin: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        store: RateLimitStore | None = None,
    ) -> None:
        self._metrics = metrics
        self._minutely_reserve = minutely_reserve
        self._minutely_burst = minutely_burst
        #: Exact's documented minute, for an answer that does not say its window's size
        self._minutely_limit = minutely_limit
        self._daily_reserve = daily_reserve
        self._error_budget = error_budget
        self._retries = rate_limit_retries
        self._max_wait = max_wait
        #: Exact's reset is the window boundary on its clock; a second more absorbs clock skew
        #: (picqer's client waits reset + 1 s for the same reason).
        self._margin = reset_margin
        self._clock = clock
        self._sleep = sleep
        self._store: RateLimitStore = store if store is not None else LocalRateLimits()
        #: (connection, division, endpoint) -> (hour, errors) as last read or counted here
        self._seen: dict[tuple[str, int, str], tuple[int, int]] = {}

    async def call(
        self,
        connection_id: str,
        division: int,
        endpoint: str,
        send: Callable[[], Awaitable[R]],
        *,
        count_errors: bool = True,
    ) -> R:
        """Send one request under the limits and return its response (any status but a 429
        that retrying cured). Raises TransientError when the limits say not now.

        ``count_errors=False``: a 4xx answer is not added to the endpoint's hourly budget,
        for a caller that already counted the one refusal it is recovering from (a filter
        split after a 400) and must not spend the budget twice for it."""
        async with self._store.turn(connection_id, division) as turn:
            state = turn.windows
            attempt = 0
            while True:
                await self._before(connection_id, division, turn, endpoint)
                try:
                    response = await send()
                except Exception:
                    self._count(endpoint, "unreachable")
                    raise
                self._count(endpoint, str(response.status_code))
                self._observe(connection_id, state, response.headers)
                status = response.status_code
                if status == 429:
                    attempt += 1
                    wait = self._wait_after_429(state)
                    if attempt > self._retries or wait > self._max_wait:
                        raise TransientError("Exact rate limit", code=429, retry_after=wait)
                    await turn.keep(wait)
                    await self._sleep(wait)
                    state.minutely.remaining = None  # a new window: the next answer tells
                    continue
                if count_errors and 400 <= status < 500:  # 429 excepted (above), as Exact does
                    hour = self._hour()
                    counted = await self._store.add_error(connection_id, division, endpoint, hour)
                    self._seen[(connection_id, division, endpoint)] = (hour, counted)
                return response

    def errors(self, connection_id: str, division: int, endpoint: str) -> int:
        """Error responses counted for ``endpoint`` in the current hour, as this governor last
        read or counted them (other replicas' count only once this one has asked the store)."""
        hour, count = self._seen.get((connection_id, division, endpoint), (self._hour(), 0))
        return count if hour == self._hour() else 0

    async def _before(self, connection_id: str, division: int, turn: Turn, endpoint: str) -> None:
        now = self._clock()
        hour = self._hour()
        errors = await self._store.errors(connection_id, division, endpoint, hour)
        self._seen[(connection_id, division, endpoint)] = (hour, errors)
        if errors >= self._error_budget:
            # One more error could get the key blocked for an hour, for every endpoint user.
            raise TransientError(
                f"Exact error budget of {endpoint} used up for this hour",
                code="error_budget",
                retry_after=(hour + 1) * _HOUR - now,
            )
        state = turn.windows
        daily = state.daily.until_reset(now, self._daily_reserve)
        if daily is not None:
            raise TransientError("Exact daily limit reached", code=429, retry_after=daily)
        minutely = state.minutely.until_reset(now, self._minutely_reserve)
        if minutely is not None:
            wait = min(minutely, _MINUTE) + self._margin
            await turn.keep(wait)
            await self._sleep(wait)
            state.minutely.remaining = None  # a new window: the next answer tells
            return
        share = state.minutely.share_wait(
            now, self._minutely_reserve, self._minutely_burst, self._minutely_limit
        )
        if share > 0:
            await turn.keep(share)
            await self._sleep(share)

    def _observe(self, connection_id: str, state: Windows, headers: Mapping[str, str]) -> None:
        for window, prefix in ((state.minutely, "Minutely-"), (state.daily, "")):
            remaining = _header(headers, f"X-RateLimit-{prefix}Remaining")
            reset = _header(headers, f"X-RateLimit-{prefix}Reset")
            if remaining is None:
                continue
            window.remaining = remaining
            window.reset = reset / 1000 if reset is not None else None
            window.limit = _header(headers, f"X-RateLimit-{prefix}Limit")
            if self._metrics is not None:
                name = "minutely" if prefix else "daily"
                self._metrics.remaining.labels(connection=connection_id, window=name).set(remaining)

    def _wait_after_429(self, state: Windows) -> float:
        """Seconds until the exhausted window resets, as far as the headers tell."""
        now = self._clock()
        daily = state.daily
        if daily.remaining == 0 and daily.reset is not None and daily.reset > now:
            return daily.reset - now + self._margin
        reset = state.minutely.reset
        if reset is None or not now - _MINUTE < reset <= now + _MINUTE:
            # No (plausible) header: Exact's minute is a calendar minute, so wait for the next.
            reset = (now // _MINUTE + 1) * _MINUTE
        return max(reset - now, 0.0) + self._margin

    def _hour(self) -> int:
        return int(self._clock() // _HOUR)

    def _count(self, endpoint: str, status: str) -> None:
        if self._metrics is not None:
            self._metrics.requests.labels(endpoint=endpoint, status=status).inc()
