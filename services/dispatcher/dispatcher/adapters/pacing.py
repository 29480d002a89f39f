"""Pacer: how fast and how many at once the dispatcher asks one provider account.

Twilio answers 429/20429 above an account's REST concurrency limit, and queues what it
accepts per sender (21611 once a sender's queue holds more than 10 hours); SendGrid answers
429 past its request rate. A backlog (a dispatcher that was stopped while 10,000 sends
queued, a monthly invoicing run) must therefore not be thrown at an account as fast as the
prefetch window allows. Each account (a Twilio account SID, a SendGrid key) gets:

- at most ``concurrency`` requests in flight;
- at most ``rate`` requests a second, with bursts of ``burst`` (a token bucket; 0: no rate).

Waiters are served in arrival order. The wait happens after the claim, so it must stay well
below the dispatcher's stale-claim time (past it, the resolver may send the same notification
again): a request that found no slot within ``max_wait`` seconds is not made, and the caller
gets a ``TransientError`` (its claim is released and the send retried later), however full
the prefetch window and however slow the provider.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from prometheus_client import Histogram

from common.errors import TransientError

__all__ = ["Pacer"]


@dataclass
class _Account:
    slots: asyncio.Semaphore
    tokens: float
    updated: float
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)


class Pacer:
    """Per-account concurrency and rate of provider requests (see the module)."""

    def __init__(
        self,
        *,
        rate: float = 0.0,
        burst: int = 1,
        concurrency: int = 50,
        max_wait: float | None = None,
        waited: Histogram | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._max_wait = max_wait
        self._burst = max(burst, 1)
        self._concurrency = concurrency
        self._waited = waited
        self._clock = clock
        self._accounts: dict[str, _Account] = {}

    def _account(self, key: str) -> _Account:
        found = self._accounts.get(key)
        if found is None:
            found = _Account(asyncio.Semaphore(self._concurrency), self._burst, self._clock())
            self._accounts[key] = found
        return found

    @asynccontextmanager
    async def turn(self, account: str, provider: str) -> AsyncIterator[None]:
        """Hold one of the account's request slots, taken within its rate; raises
        ``TransientError`` (nothing was sent) when none came within ``max_wait``."""
        state = self._account(account)
        started = self._clock()
        try:
            async with asyncio.timeout(self._max_wait):
                await state.slots.acquire()
                try:
                    if self._rate > 0:
                        async with state.turn:  # one waiter at a time takes the next token
                            await self._token(state)
                except BaseException:
                    state.slots.release()
                    raise
        except TimeoutError:
            raise TransientError(
                f"no {provider} request slot within {self._max_wait:g} s: not sent"
            ) from None
        try:
            if self._waited is not None:
                self._waited.labels(provider=provider).observe(self._clock() - started)
            yield
        finally:
            state.slots.release()

    async def _token(self, state: _Account) -> None:
        while True:
            now = self._clock()
            state.tokens = min(self._burst, state.tokens + (now - state.updated) * self._rate)
            state.updated = now
            if state.tokens >= 1:
                state.tokens -= 1
                return
            await asyncio.sleep((1 - state.tokens) / self._rate)
