"""Per-source rate limits on the webhook routes, before anything costs a lookup or a parse.

Every webhook route is reachable without credentials, and an unknown connection id or a forged
signature costs a secret lookup (token-keeper, PostgreSQL) before it can be refused. A token
bucket per source address bounds what one source can make ingress do; over its limit a request
is answered 429 with ``Retry-After`` before its body is read.

- The source is the peer address. ``X-Forwarded-For`` is believed only when the peer is one of
  the trusted proxies (``MLC_INGRESS_TRUSTED_PROXIES``): anyone can write that header, so
  believing it from anyone would let a flood pick a fresh source per request.
- IPv6 sources are bucketed per /64: one host usually holds a whole /64, and would otherwise
  get a fresh bucket per address.
- At most ``capacity`` buckets are kept. A bucket that has refilled to the full burst is the
  same as no bucket and is dropped; past the capacity the least recently seen one is, so a flood
  from ever new addresses costs bounded memory (its price: such a source starts afresh).
- Per process: with N replicas a source may send N times the rate, which the generous default
  allows for.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

__all__ = [
    "CLIENT",
    "WEBHOOK_PREFIX",
    "Network",
    "RateLimiter",
    "Verdict",
    "client_source",
    "parse_networks",
    "rate_limit_middleware",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Called for each refusal: (request, whether to log it as well as count it).
OnRefusal = Callable[[web.Request, bool], None]

#: The routes the limit applies to (health and metrics stay reachable for probes).
WEBHOOK_PREFIX = "/webhooks/"
#: The source a request was counted against, for the log lines of later refusals.
CLIENT = web.RequestKey("client", str)


def parse_networks(value: str) -> tuple[Network, ...]:
    """``"10.0.0.0/8, 192.0.2.7"`` as networks. Raises ValueError on anything else."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False)
        for part in value.split(",")
        if part.strip()
    )


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)


def _bucket_key(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_source(
    peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]
) -> str:
    """The address a request is counted against.

    Walks ``X-Forwarded-For`` from the right (the hop the nearest proxy appended) while the hop
    is a trusted proxy; the first untrusted hop is the client. An unreadable hop ends the walk
    at the last address known good, so a garbled header cannot name an arbitrary source."""
    address = _address(peer) if peer else None
    if address is None:
        return "unknown"
    hops = [hop for header in forwarded_for for hop in header.split(",")]
    while hops and _trusted(address, trusted):
        hop = _address(hops.pop())
        if hop is None:
            break
        address = hop
    return _bucket_key(address)


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a request is admitted; if not, when to retry and whether to report (log) this
    refusal: once per source per ``report_every`` seconds, not once per request of a flood."""

    admitted: bool
    retry_after: float = 0.0
    report: bool = False


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    reported: float = -math.inf


class RateLimiter:
    """Token buckets of ``burst`` tokens refilled at ``rate`` per second, one per source."""

    def __init__(
        self,
        rate: float,
        burst: int,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
        report_every: float = 60.0,
    ) -> None:
        self._rate, self._burst, self._capacity, self._clock = rate, float(burst), capacity, clock
        self._report_every = report_every
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, source: str) -> Verdict:
        """Spend one token of ``source``'s bucket, or say how long until there is one."""
        now = self._clock()
        bucket = self._buckets.pop(source, None) or _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        self._evict(now)
        self._buckets[source] = bucket  # most recently seen last
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Verdict(admitted=True)
        report = now - bucket.reported >= self._report_every
        if report:
            bucket.reported = now
        return Verdict(False, (1.0 - bucket.tokens) / self._rate, report)

    def _evict(self, now: float) -> None:
        """Make room for one bucket: drop full (idle) buckets from the least recently seen end,
        and the least recently seen ones while at capacity."""
        while self._buckets:
            source, oldest = next(iter(self._buckets.items()))
            full = oldest.tokens + (now - oldest.updated) * self._rate >= self._burst
            if not full and len(self._buckets) < self._capacity:
                return
            del self._buckets[source]


def _refusal(retry_after: float) -> web.Response:
    return web.json_response(
        {"outcome": "rate_limited"},
        status=429,
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


def rate_limit_middleware(
    limiter: RateLimiter, trusted: Sequence[Network], on_refusal: OnRefusal
) -> Middleware:
    """A middleware that answers 429 to a source over its limit on the webhook routes, before
    the handler reads the body or looks up a secret. ``on_refusal(request, report)`` counts
    each refusal, and logs those the limiter says to report."""

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(WEBHOOK_PREFIX):
            return await handler(request)
        source = client_source(
            request.remote, request.headers.getall("X-Forwarded-For", []), trusted
        )
        request[CLIENT] = source
        verdict = limiter.take(source)
        if verdict.admitted:
            return await handler(request)
        on_refusal(request, verdict.report)
        return _refusal(verdict.retry_after)

    return limit
