"""Security events: requests refused as hostile or unauthorised, counted and logged.

``mlc_security_events_total{kind}`` counts every such refusal; its label set is fixed (the
kinds below, created at zero) so that an alert can watch each from the start and no request
can add a label value. Each refusal is also logged as a ``security_event`` warning, masked by
``common.logging`` like every line (no phone number, address or secret in clear).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from ingress.keys import SECURITY
from ingress.ratelimit import CLIENT

__all__ = ["SECURITY_EVENT_KINDS", "SecurityEventKind", "record", "security_events_counter"]

log = structlog.get_logger("ingress")

SecurityEventKind = Literal[
    # More requests from one source than its rate limit allows (429).
    "rate_limited",
    # No signature header or envelope at all (401).
    "unsigned",
    # A signature that the expected key did not make (401).
    "forged_signature",
    # A connection id that cannot exist or that token-keeper does not know (401, 404).
    "unknown_connection",
    # Signed by a Twilio account, but the form names another account's AccountSid (403).
    "cross_tenant_account",
    # ``?connection=X`` where X brings no own Twilio account / SendGrid key: its callbacks
    # come without ``?connection=``, so such a request is not the vendor's (403).
    "connection_without_own_account",
]
SECURITY_EVENT_KINDS: tuple[SecurityEventKind, ...] = get_args(SecurityEventKind)


def security_events_counter(registry: CollectorRegistry) -> Counter:
    """The counter, with every kind present at zero."""
    counter = Counter(
        "mlc_security_events_total",
        "Requests refused at ingress as hostile or unauthorised, by kind",
        ["kind"],
        registry=registry,
    )
    for kind in SECURITY_EVENT_KINDS:
        counter.labels(kind=kind)
    return counter


def _route(request: web.Request) -> str:
    """The route's template, not the path: a path is the caller's text (NUL, 8 KB...), and
    would put it in the log line."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "-"


def record(
    request: web.Request,
    kind: SecurityEventKind,
    context: Mapping[str, object] | None = None,
    *,
    log_it: bool = True,
) -> None:
    """Count one refusal of ``kind``; log it with ``context`` unless ``log_it`` is False (the
    repeats of a flood)."""
    request.app[SECURITY].labels(kind=kind).inc()
    if log_it:
        log.warning(
            "security_event",
            kind=kind,
            route=_route(request),
            client=request.get(CLIENT, request.remote),
            **(context or {}),
        )
