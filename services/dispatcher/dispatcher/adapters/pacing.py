"""Pacer: how fast and how many at once the dispatcher asks one provider account.

Twilio answers 429/20429 above an account's REST concurrency limit, and queues what it
accepts per sender (21611 once a sender's queue holds more than 10 hours); SendGrid answers
429 past its request rate. A backlog (a dispatcher that was stopped while 10,000 sends
queued, a monthly invoicing run) must therefore not be thrown at an account as fast as the
prefetch window allows. Each account (a Twilio account SID, a SendGrid key) gets:

- at most ``concurrency`` requests in flight;
- at most ``rate`` requests a second, with bursts of ``burst`` (a token bucket; 0: no rate).

Waiters are served in arrival order. The wait happens after the claim, so it must stay well
below the dispatcher's stale-claim time: at most about prefetch / rate seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from prometheus_client import Histogram

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
        waited: Histogram | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
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
        """Hold one of the account's request slots, taken within its rate."""
        state = self._account(account)
        started = self._clock()
        async with state.slots:
            if self._rate > 0:
                async with state.turn:  # one waiter at a time takes the next token: FIFO
                    await self._token(state)
            if self._waited is not None:
                self._waited.labels(provider=provider).observe(self._clock() - started)
            yield

    async def _token(self, state: _Account) -> None:
        while True:
            now = self._clock()
            state.tokens = min(self._burst, state.tokens + (now - state.updated) * self._rate)
            state.updated = now
            if state.tokens >= 1:
                state.tokens -= 1
                return
            await asyncio.sleep((1 - state.tokens) / self._rate)
