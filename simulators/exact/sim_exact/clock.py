"""The simulated clock every time rule of the simulator reads.

Simulated time runs ``speed`` times as fast as real time from the moment the clock was made,
plus an offset that ``advance`` moves forward::

    now = started + (real_now - real_started) * speed + offset

Token lifetimes, rate-limit windows, the error-block hour and webhook timestamps all use it, so a
test can jump 30 days ahead and a long simulation can run a day in minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

__all__ = ["Clock", "epoch_ms"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(moment: datetime) -> int:
    """Whole milliseconds since the epoch (floored, in integer arithmetic)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


class Clock:
    """Epoch seconds on the simulated time line."""

    def __init__(self, speed: float = 1.0, *, real: Callable[[], float] = time.time) -> None:
        self._speed = speed
        self._real = real
        self._started = real()
        self._offset = 0.0

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self._started + (self._real() - self._started) * self._speed + self._offset

    def now_dt(self) -> datetime:
        """Simulated now as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> float:
        """Move simulated time forward (never back) and return the new now."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
        return self.now()
