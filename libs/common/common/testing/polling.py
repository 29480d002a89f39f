"""Wait for a condition by polling to a deadline: tests never sleep a fixed time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually"]

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T] | T],
    *,
    until: Callable[[T], bool] = bool,
    timeout: float = 20.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call ``probe`` until ``until(result)`` holds and return that result.

    Raises ``AssertionError`` naming ``what`` and the last value when ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        result = probe()
        value: T = await result if inspect.isawaitable(result) else result
        last = value
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout}s; last value: {last!r}")
        await asyncio.sleep(interval)
