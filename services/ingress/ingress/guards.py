"""Cheap checks that run before anything costs a lookup, a parse or a publish.

- ``valid_connection_id``: a strict pattern, so a NUL, a path or a megabyte of text never
  reaches token-keeper or a log line.
- ``json_depth_ok``: JSON nesting bounded before any parser recurses into it.
- ``ReplayGuard``: a webhook body (its signature) seen within the window is acknowledged but
  not published again, and an Exact event older than the maximum age is not published at all:
  replaying one captured webhook cannot spend a company's Exact calls. Per process: with more
  replicas a replay may pass once per replica, which the idempotency keys make harmless.
- ``expect_continue``: the ``Expect`` header answered without echoing it. aiohttp's default
  handler puts the header's value into its 417 text, so a value that is not UTF-8 made it a
  500; it runs before any middleware, so it must be cheap and safe on its own.
- ``no_route``: the 404 / 405 of a request no route takes, answered by a catch-all route with
  that ``Expect`` handler (aiohttp's own 404 / 405 use the default one, with the same 500).
"""

from __future__ import annotations

import re
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime

from aiohttp import hdrs, web

__all__ = [
    "ReplayGuard",
    "event_age_seconds",
    "expect_continue",
    "json_depth_ok",
    "no_route",
    "same_client_id",
    "valid_connection_id",
]

_CONNECTION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: Deepest JSON accepted: Exact's webhooks nest 2 levels, SendGrid's events 3.
MAX_JSON_DEPTH = 16


def valid_connection_id(value: str) -> bool:
    return _CONNECTION_ID.fullmatch(value) is not None


def same_client_id(sent: str, configured: str) -> bool:
    """Exact sends its ``ClientId`` as a bare lower-case GUID; an app's client id is often
    written with braces or in upper case (``{6B1D...}``). Compared as UUIDs; a value that is
    not one compares as text, ignoring case."""
    try:
        return uuid.UUID(sent.strip()) == uuid.UUID(configured.strip())
    except ValueError:
        return sent.strip().lower() == configured.strip().lower()


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


async def expect_continue(request: web.Request) -> None:
    """``Expect: 100-continue`` invites the body; any other expectation is a 417 that does not
    repeat what was sent."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version < (1, 1):
        return
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text="Unknown Expect")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    # What was written is not the response: the response's size starts after it.
    request.writer.output_size = 0


async def no_route(request: web.Request) -> web.StreamResponse:
    """What aiohttp would answer for a request no other route takes: 405 when another route
    has the path (with the methods it allows), else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            allowed |= (await resource.resolve(request))[1]
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()
