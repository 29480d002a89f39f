"""Cheap checks that run before anything costs a lookup, a parse or a publish.

- ``valid_connection_id``: a strict pattern, so a NUL, a path or a megabyte of text never
  reaches token-keeper or a log line.
- ``json_depth_ok``: JSON nesting bounded before any parser recurses into it.
- ``ReplayGuard``: a webhook body (its signature) seen within the window is acknowledged but
  not published again, and an Exact event older than the maximum age is not published at all:
  replaying one captured webhook cannot spend a company's Exact calls. Per process: with more
  replicas a replay may pass once per replica, which the idempotency keys make harmless.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from datetime import UTC, datetime

__all__ = ["ReplayGuard", "event_age_seconds", "json_depth_ok", "valid_connection_id"]

_CONNECTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Deepest JSON accepted: Exact's webhooks nest 2 levels, SendGrid's events 3.
MAX_JSON_DEPTH = 16


def valid_connection_id(value: str) -> bool:
    return _CONNECTION_ID.fullmatch(value) is not None


def json_depth_ok(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """False when ``body`` nests arrays/objects deeper than ``limit`` (strings skipped)."""
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return False
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return True


def event_age_seconds(event_created_on: str, now: datetime | None = None) -> float | None:
    """Seconds since Exact's ``EventCreatedOn`` (no offset; read as UTC), None if unreadable.

    Exact's time zone for it is unconfirmed (UTC or CET): callers allow for a few hours."""
    try:
        created = datetime.fromisoformat(event_created_on).replace(tzinfo=UTC)
    except ValueError:
        return None
    return ((now or datetime.now(UTC)) - created).total_seconds()


class ReplayGuard:
    """Remembers what was published for ``window`` seconds, at most ``capacity`` entries."""

    def __init__(self, window: float, capacity: int = 200_000) -> None:
        self._window, self._capacity = window, capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def seen(self, key: str) -> bool:
        """True when ``key`` was recorded within the window."""
        now = time.monotonic()
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at <= self._window and len(self._seen) <= self._capacity:
                break
            self._seen.pop(oldest)
        return key in self._seen

    def record(self, key: str) -> None:
        self._seen[key] = time.monotonic()
        self._seen.move_to_end(key)
