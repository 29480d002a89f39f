"""What every ``/api/`` call goes through before and after its handler, in this order::

    injected fault? --yes--> fault answer (latency: wait, then carry on)
    token endpoint:  blocked? -> 403 | handler
    REST (/api/v1):  bearer token? -> 401 | division known? -> 403 | endpoint blocked? -> 403
                     | limits? -> 429 (exhausted limit's headers) | handler + six limit headers
    after:           count 4xx towards the error block; Atom XML unless Accept has JSON;
                     record the call; metrics

Handlers raise ``ApiError``; this module turns it into Exact's error envelope.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from sim_exact import atom
from sim_exact.calls import CallRecord
from sim_exact.entities import BY_PATH
from sim_exact.errors import ApiError, error_response
from sim_exact.faults import Fault
from sim_exact.oauth import Chain
from sim_exact.state import SIMULATOR, Simulator

__all__ = ["CHAIN", "Target", "api_pipeline", "classify"]

#: The token chain that authenticated a REST call.
CHAIN = web.RequestKey("chain", Chain)

_V1_DIVISION = re.compile(r"^/api/v1/(\d+)/([^/]+)/([A-Za-z]+)")
_V1_SYNC = re.compile(
    r"^/api/v1/(\d+)/(sync/Deleted|read/sync/Sync/SyncTimestamp|sync/[A-Za-z]+/[A-Za-z]+)$"
)
_MAINTENANCE = (
    "<html><head><title>Exact Online</title></head><body><h1>Service unavailable</h1>"
    "<p>Exact Online is temporarily unavailable due to maintenance.</p></body></html>"
)


@dataclass(frozen=True)
class Target:
    """What a path addresses: ``kind`` is ``oauth``, ``rest`` or ``other``."""

    kind: str
    endpoint: str
    division: int | None = None


def classify(path: str) -> Target:
    """The metric/error-block endpoint label and division of an ``/api/`` path."""
    if path in ("/api/oauth2/token", "/api/oauth2/auth"):
        return Target("oauth", path.removeprefix("/api/"))
    if path == "/api/v1/current/Me":
        return Target("rest", "current/Me")
    sync = _V1_SYNC.match(path)
    if sync:
        return Target("rest", sync.group(2), int(sync.group(1)))
    match = _V1_DIVISION.match(path)
    if match:
        endpoint = f"{match.group(2)}/{match.group(3)}"
        return Target("rest", endpoint if endpoint in BY_PATH else "other", int(match.group(1)))
    return Target("rest" if path.startswith("/api/v1/") else "other", "other")


def _wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "").lower()


def _fault_response(fault: Fault, target: Target, sim: Simulator) -> web.Response:
    if fault.kind == "http_503":
        return web.Response(status=503, text=_MAINTENANCE, content_type="text/html")
    if fault.kind == "http_429":
        return error_response(
            429, "API rate limit exceeded.", sim.limiter.exhausted_minutely_headers()
        )
    if fault.kind == "http_401":
        if target.kind == "oauth":
            return web.json_response({"error": "invalid_client"}, status=401)
        return error_response(401, "Unauthorized")
    return error_response(500, "An error has occurred.")


def _authenticate(request: web.Request, sim: Simulator) -> Chain:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    chain = sim.oauth.authenticate(token.strip()) if scheme.lower() == "bearer" else None
    if chain is None:
        raise ApiError(401, "Unauthorized")
    return chain


async def _rest(
    request: web.Request, handler: Handler, target: Target, sim: Simulator
) -> web.StreamResponse:
    limit_headers: dict[str, str] = {}
    try:
        request[CHAIN] = _authenticate(request, sim)
        if target.division is not None:
            if not sim.store.has_division(target.division):
                raise ApiError(403, f"Forbidden: no access to division {target.division}")
            if sim.errors.blocked(target.division, target.endpoint):
                return error_response(
                    403,
                    "Blocked: too many errors on this endpoint within "
                    "the hour. Try again in the next hour.",
                )
            decision = sim.limiter.take(target.division)
            if not decision.allowed:
                sim.metrics.rate_limited.labels(decision.exhausted).inc()
                return error_response(429, "API rate limit exceeded.", decision.headers)
            limit_headers = decision.headers
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.message, exc.headers)
    except web.HTTPException as exc:  # no such route or method
        response = error_response(exc.status, exc.reason)
    response.headers.update(limit_headers)
    sim.errors.record(target.division, target.endpoint, response.status)
    return response


async def _oauth(
    request: web.Request, handler: Handler, target: Target, sim: Simulator
) -> web.StreamResponse:
    if sim.errors.blocked(None, target.endpoint):
        return web.json_response(
            {"error": "access_denied", "error_description": "Blocked: too many errors."},
            status=403,
        )
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # wrong method
        response = web.json_response({"error": "invalid_request"}, status=exc.status)
    sim.errors.record(None, target.endpoint, response.status)
    return response


def _as_atom(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return response
    body, content_type = atom.render(json.loads(response.text or "null"), str(request.url))
    converted = web.Response(
        status=response.status, body=body, headers={"Content-Type": content_type}
    )
    for name in response.headers:
        if name.lower().startswith("x-ratelimit") or name.lower() == "reason":
            converted.headers[name] = response.headers[name]
    return converted


@web.middleware
async def api_pipeline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The middleware applying the rules above to ``/api/`` paths (others pass through)."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    sim = request.app[SIMULATOR]
    target = classify(request.path)
    fault = sim.faults.take(request.path_qs)
    if fault is not None and fault.kind == "latency":
        await asyncio.sleep(5.0 if fault.seconds is None else fault.seconds)
    if fault is not None and fault.kind != "latency":
        response: web.StreamResponse = _fault_response(fault, target, sim)
    elif target.kind == "oauth":
        response = await _oauth(request, handler, target, sim)
    else:
        response = await _rest(request, handler, target, sim)
        if not _wants_json(request):
            response = _as_atom(request, response)
    sim.calls.add(
        CallRecord(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            division=target.division,
            endpoint=target.endpoint,
            status=response.status,
            at=sim.clock.now_dt().isoformat(timespec="milliseconds"),
            fault=fault.kind if fault is not None else None,
        )
    )
    sim.metrics.api_calls.labels(target.endpoint, str(response.status)).inc()
    return response
