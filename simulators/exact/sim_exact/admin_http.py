"""JSON plumbing shared by the admin routes (``admin`` and ``control``).

Bodies are JSON objects; records go out with Exact's field names and ``/Date(ms)/`` dates.
Errors answer ``{"error": "<message>"}``: 400 for a bad body or field, 404 for an unknown
record, division or entity set, 409 for a state conflict (``AdminError`` carries the status).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from sim_exact.documents import NotFound
from sim_exact.odata import json_value
from sim_exact.state import SIMULATOR, Simulator
from sim_exact.store import Row

__all__ = ["AdminError", "admin_errors", "division_of", "json_body", "record", "simulator"]


class AdminError(Exception):
    """An admin request that cannot be served, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def simulator(request: web.Request) -> Simulator:
    return request.app[SIMULATOR]


def record(row: Row) -> dict[str, Any]:
    """A stored record in Exact's JSON form (no ``__metadata``)."""
    return {name: json_value(value) for name, value in row.items()}


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (empty body: ``{}``)."""
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise AdminError(400, "body is not JSON") from exc
    if not isinstance(body, dict):
        raise AdminError(400, "body must be a JSON object")
    return body


def division_of(sim: Simulator, value: Any) -> int:
    """``value`` as an existing division; the default division when it is None."""
    division = sim.settings.exact_division if value is None else int(value)
    if not sim.store.has_division(division):
        raise AdminError(404, f"division {division} does not exist")
    return division


@web.middleware
async def admin_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map admin failures to JSON answers (``/_sim/`` paths only)."""
    if not request.path.startswith("/_sim/"):
        return await handler(request)
    try:
        return await handler(request)
    except AdminError as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    except NotFound as exc:
        return web.json_response({"error": str(exc)}, status=404)
    except KeyError as exc:  # unknown or missing field
        return web.json_response({"error": str(exc.args[0] if exc.args else exc)}, status=400)
    except (ValueError, TypeError) as exc:  # ill-typed value
        return web.json_response({"error": str(exc)}, status=400)
