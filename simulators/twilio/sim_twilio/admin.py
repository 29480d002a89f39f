"""The simulator's own API under ``/_sim/`` (JSON), and ``/healthz``, ``/readyz``, ``/metrics``.

=======================  ===================================================================
``POST /_sim/faults``    body: a fault (see ``faults.py``) -> 201 the fault with its ``id``;
                         400 ``{"error": ...}`` when malformed
``GET /_sim/faults``     ``{"faults": [...]}``, the ones still active
``DELETE /_sim/faults``  forget every fault -> ``{"faults": []}``
``GET /_sim/requests``   ``{"requests": [...]}``; ``?path=<suffix>`` keeps requests whose path
                         ends with it, ``?method=`` filters by method
``GET /_sim/messages``   ``{"messages": [...]}``: resources with ``status_callback``,
                         ``extra_params``, ``faults_applied`` and ``callbacks`` (attempts
                         with HTTP status); ``?to=`` filters
``GET /_sim/calls``      ``{"calls": [...]}``, same shape for calls, plus ``twiml`` (the
                         ``Twiml`` parameter as received, or ``null``); ``callbacks`` lists
                         the AMD verdict post too, as status ``amd``
``GET /_sim/emails``     ``{"emails": [...]}``, accepted SendGrid mails
``POST /_sim/reset``     stop background work, forget everything -> ``{"reset": true}``
=======================  ===================================================================
"""

from __future__ import annotations

import json

from aiohttp import web

from sim_twilio.faults import FaultSpecError
from sim_twilio.inbound import inject_inbound
from sim_twilio.keys import METRICS, STATE
from sim_twilio.metrics import metrics_view

__all__ = ["routes"]

routes = web.RouteTableDef()


@routes.post("/_sim/faults")
async def add_fault(request: web.Request) -> web.Response:
    """Activate a fault for the next matching requests."""
    try:
        spec = await request.json()
        if not isinstance(spec, dict):
            raise FaultSpecError("the body must be a JSON object")
        fault = request.app[STATE].faults.add(spec)
    except (FaultSpecError, json.JSONDecodeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(fault.as_json(), status=201)


@routes.get("/_sim/faults")
async def list_faults(request: web.Request) -> web.Response:
    """The faults still waiting to apply."""
    return web.json_response({"faults": [f.as_json() for f in request.app[STATE].faults.active()]})


@routes.delete("/_sim/faults")
async def clear_faults(request: web.Request) -> web.Response:
    """Forget every fault."""
    request.app[STATE].faults.clear()
    return web.json_response({"faults": []})


@routes.get("/_sim/requests")
async def list_requests(request: web.Request) -> web.Response:
    """Recorded vendor requests, oldest first."""
    suffix = request.query.get("path", "")
    method = request.query.get("method", "").upper()
    found = [
        r.as_json()
        for r in request.app[STATE].requests
        if r.path.endswith(suffix) and (not method or r.method == method)
    ]
    return web.json_response({"requests": found})


@routes.get("/_sim/messages")
async def list_messages(request: web.Request) -> web.Response:
    """Created messages, oldest first, with their callbacks."""
    to = request.query.get("to")
    records = request.app[STATE].messages.values()
    found = [r.as_json() for r in records if to is None or r.resource["to"] == to]
    return web.json_response({"messages": found})


@routes.get("/_sim/calls")
async def list_calls(request: web.Request) -> web.Response:
    """Created calls, oldest first, with their callbacks."""
    return web.json_response({"calls": [r.as_json() for r in request.app[STATE].calls.values()]})


@routes.get("/_sim/emails")
async def list_emails(request: web.Request) -> web.Response:
    """Mails accepted by ``/v3/mail/send``."""
    return web.json_response({"emails": request.app[STATE].emails})


routes.post("/_sim/inbound")(inject_inbound)


@routes.post("/_sim/reset")
async def reset(request: web.Request) -> web.Response:
    """Back to a fresh simulator."""
    await request.app[STATE].reset()
    return web.json_response({"reset": True})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: the simulator depends on nothing external."""
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    return metrics_view(request.app[METRICS])
