"""The one middleware: record each vendor request, turn raised vendor errors into responses,
and count every answer.

Requests to the vendor APIs are recorded before the handler runs (so a response held back by a
``timeout`` fault is already visible, with ``status: null``) and get their status when the
answer is ready. Admin, health and metrics requests are not recorded. An unknown path under
``/2010-04-01/`` gets Twilio's 20404 body rather than aiohttp's plain 404.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from sim_twilio.errors import SendGridError, TwilioError
from sim_twilio.forms import FORM, form_pairs, json_body
from sim_twilio.keys import METRICS, STATE
from sim_twilio.state import utcnow

__all__ = ["PathOnlyAccessLogger", "observe"]

_UNRECORDED = ("/_sim/", "/healthz", "/readyz", "/metrics")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(request: web.Request) -> str:
    """The route template, a bounded label (never a concrete SID or number)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record, convert vendor errors, count."""
    state, metrics = request.app[STATE], request.app[METRICS]
    record = None
    if not request.path.startswith(_UNRECORDED):
        pairs = await form_pairs(request)
        record = state.record_request(
            method=request.method,
            path=request.path,
            query=[[k, v] for k, v in request.query.items()],
            form=[[k, v] for k, v in pairs] if request.content_type == FORM else None,
            json=await json_body(request),
            content_type=request.content_type,
            received_at=utcnow().isoformat(),
        )
    try:
        response = await handler(request)
    except (TwilioError, SendGridError) as error:
        response = error.response()
    except web.HTTPNotFound:
        if not request.path.startswith("/2010-04-01/"):
            raise
        response = TwilioError(20404, path=request.path).response()
    except web.HTTPException as exc:
        if record is not None:
            record.status = exc.status
        metrics.requests.labels(_route(request), request.method, str(exc.status)).inc()
        raise
    if record is not None:
        record.status = response.status
    metrics.requests.labels(_route(request), request.method, str(response.status)).inc()
    return response


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings: a list filter such as ``?To=+316...`` would otherwise
    put a phone number in the log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        """One line per request: method, path, status, seconds."""
        self.logger.info(
            "request_served method=%s path=%s status=%s seconds=%.3f",
            request.method,
            request.path,
            response.status,
            time,
        )
