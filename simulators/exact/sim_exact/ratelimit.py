"""Exact's per-division call limits and the error-block rule, on the simulated clock.

Limits (reference section 4): ``minutely_limit`` calls per calendar minute and ``daily_limit``
per UTC day, per division, only for calls with a division in the path. Every such response
carries six headers, resets in epoch milliseconds::

    X-RateLimit-Limit / -Remaining / -Reset                   daily   (next 00:00 UTC)
    X-RateLimit-Minutely-Limit / -Remaining / -Reset          minutely (next minute)

A call beyond a limit gets 429 with only the exhausted limit's headers and is not counted.

Error block: once ``limit`` error responses (4xx other than 429) were sent for one endpoint of one
division within a clock hour, that endpoint answers 403 until the hour ends.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sim_exact.clock import Clock

__all__ = ["Decision", "ErrorTracker", "RateLimiter"]

_DAY = 86_400
_MINUTE = 60
_HOUR = 3_600


@dataclass(frozen=True)
class Decision:
    """Whether a call may proceed, which limit stopped it, and the headers to send."""

    allowed: bool
    exhausted: str | None
    headers: dict[str, str]


@dataclass
class _Window:
    minute: int = -1
    minute_calls: int = 0
    day: int = -1
    day_calls: int = 0


@dataclass
class _DivisionStats:
    calls: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class RateLimiter:
    """Fixed calendar-minute and UTC-day windows per division."""

    def __init__(self, clock: Clock, *, minutely_limit: int, daily_limit: int) -> None:
        self._clock = clock
        self.minutely_limit = minutely_limit
        self.daily_limit = daily_limit
        self._windows: dict[int, _Window] = {}
        self._stats: dict[int, _DivisionStats] = {}

    def take(self, division: int) -> Decision:
        """Count one call for ``division`` if a limit allows it."""
        now = self._clock.now()
        window = self._window(division, now)
        stats = self._stats.setdefault(division, _DivisionStats())
        daily = self._daily_headers(window, now)
        minutely = self._minutely_headers(window, now)
        if window.day_calls >= self.daily_limit:
            stats.rejected["daily"] += 1
            return Decision(False, "daily", daily)
        if window.minute_calls >= self.minutely_limit:
            stats.rejected["minutely"] += 1
            return Decision(False, "minutely", minutely)
        window.day_calls += 1
        window.minute_calls += 1
        stats.calls += 1
        return Decision(
            True, None, {**self._daily_headers(window, now), **self._minutely_headers(window, now)}
        )

    def exhausted_minutely_headers(self) -> dict[str, str]:
        """Headers of an exhausted minute (for an injected 429)."""
        now = self._clock.now()
        return {
            "X-RateLimit-Minutely-Limit": str(self.minutely_limit),
            "X-RateLimit-Minutely-Remaining": "0",
            "X-RateLimit-Minutely-Reset": str((int(now // _MINUTE) + 1) * _MINUTE * 1000),
        }

    def stats(self) -> dict[str, Any]:
        now = self._clock.now()
        out: dict[str, Any] = {}
        for division, stats in sorted(self._stats.items()):
            window = self._window(division, now)
            out[str(division)] = {
                "calls": stats.calls,
                "rate_limited": {
                    "minutely": stats.rejected["minutely"],
                    "daily": stats.rejected["daily"],
                },
                "minutely_remaining": max(self.minutely_limit - window.minute_calls, 0),
                "daily_remaining": max(self.daily_limit - window.day_calls, 0),
            }
        return out

    def reset(self) -> None:
        self._windows.clear()
        self._stats.clear()

    def _window(self, division: int, now: float) -> _Window:
        window = self._windows.setdefault(division, _Window())
        minute, day = int(now // _MINUTE), int(now // _DAY)
        if window.minute != minute:
            window.minute, window.minute_calls = minute, 0
        if window.day != day:
            window.day, window.day_calls = day, 0
        return window

    def _daily_headers(self, window: _Window, now: float) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.daily_limit),
            "X-RateLimit-Remaining": str(max(self.daily_limit - window.day_calls, 0)),
            "X-RateLimit-Reset": str((int(now // _DAY) + 1) * _DAY * 1000),
        }

    def _minutely_headers(self, window: _Window, now: float) -> dict[str, str]:
        return {
            "X-RateLimit-Minutely-Limit": str(self.minutely_limit),
            "X-RateLimit-Minutely-Remaining": str(
                max(self.minutely_limit - window.minute_calls, 0)
            ),
            "X-RateLimit-Minutely-Reset": str((int(now // _MINUTE) + 1) * _MINUTE * 1000),
        }


class ErrorTracker:
    """Error responses per (division, endpoint) and clock hour; blocks after ``limit``."""

    def __init__(self, clock: Clock, *, limit: int, enabled: bool) -> None:
        self._clock = clock
        self.limit = limit
        self.enabled = enabled
        self._errors: dict[tuple[int | None, str, int], Counter[int]] = {}
        self._blocked: Counter[tuple[int | None, str, int]] = Counter()

    def blocked(self, division: int | None, endpoint: str) -> bool:
        """True when the endpoint is blocked for the rest of this hour (counts the refusal)."""
        slot = (division, endpoint, int(self._clock.now() // _HOUR))
        errors = self._errors.get(slot)
        if not self.enabled or errors is None or sum(errors.values()) < self.limit:
            return False
        self._blocked[slot] += 1
        return True

    def record(self, division: int | None, endpoint: str, status: int) -> None:
        """Count a response if it is an error that counts (4xx except 429)."""
        if 400 <= status < 500 and status != 429:
            slot = (division, endpoint, int(self._clock.now() // _HOUR))
            self._errors.setdefault(slot, Counter())[status] += 1

    def stats(self) -> list[dict[str, Any]]:
        return [
            {
                "division": division,
                "endpoint": endpoint,
                "hour_start": int(hour * _HOUR * 1000),
                "errors": sum(by_status.values()),
                "by_status": {str(status): n for status, n in sorted(by_status.items())},
                "blocked": self.enabled and sum(by_status.values()) >= self.limit,
                "refused_while_blocked": self._blocked[(division, endpoint, hour)],
            }
            for (division, endpoint, hour), by_status in sorted(
                self._errors.items(), key=lambda item: (item[0][2], item[0][1], item[0][0] or 0)
            )
        ]

    def reset(self) -> None:
        self._errors.clear()
        self._blocked.clear()
