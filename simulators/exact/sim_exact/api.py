"""Exact's REST resources under ``/api/v1`` (the pipeline has already checked token and limits).

    GET    /api/v1/current/Me                                  the token's user (no division)
    GET    /api/v1/{division}/{service}/{Entity}               collection (OData options)
    GET    /api/v1/{division}/{service}/{Entity}/$count        bare integer
    GET    /api/v1/{division}/{service}/{Entity}(guid'<key>')  one record, 404 when unknown
    POST   /api/v1/{division}/webhooks/WebhookSubscriptions    {CallbackURL, Topic}: validation
                                                               POST first; 500 when it fails
    DELETE /api/v1/{division}/webhooks/WebhookSubscriptions(guid'<id>')   204
    PUT    .../WebhookSubscriptions(guid'<id>')                400: updates are not allowed

The connector never writes business data, so the other entity sets are read-only here (405).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from sim_exact.entities import BY_PATH, TOPICS, WEBHOOK_SUBSCRIPTIONS, EntitySet
from sim_exact.errors import ApiError
from sim_exact.odata import QueryError, next_url, paginate, parse_query, serialize
from sim_exact.seed import DEMO_USER
from sim_exact.state import SIMULATOR
from sim_exact.store import Row, coerce

__all__ = ["add_routes"]

_RESOURCE = re.compile(r"^(?P<name>[A-Za-z]+)(?:\((?P<key>[^)]*)\))?$")
_ME_TYPE = "Exact.Web.Api.System.Me"


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _entity(request: web.Request) -> tuple[int, EntitySet, str | None]:
    match = _RESOURCE.match(request.match_info["resource"])
    entity = BY_PATH.get(f"{request.match_info['service']}/{match['name']}") if match else None
    if match is None or entity is None:
        raise ApiError(404, "Resource not found.")
    return int(request.match_info["division"]), entity, match["key"]


def _parse_key(entity: EntitySet, literal: str) -> Any:
    text = literal.strip()
    if text.startswith("guid'") and text.endswith("'"):
        text = text[5:-1]
    try:
        return coerce(entity.fields[entity.key], text)
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"Invalid key: {literal}") from exc


def _query(request: web.Request, entity: EntitySet) -> Any:
    try:
        limit = request.app[SIMULATOR].settings.filter_node_limit
        return parse_query(request.query, entity, node_limit=limit or None)
    except QueryError as exc:
        raise ApiError(400, str(exc)) from exc


def _row_json(
    request: web.Request, division: int, entity: EntitySet, row: Row, select: Any
) -> dict[str, Any]:
    uri = entity.record_url(_origin(request), division, row[entity.key])
    return serialize(row, entity, select, uri)


async def me(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    fields = {"CurrentDivision": sim.settings.exact_division, **DEMO_USER}
    select = request.query.get("$select")
    names = [n.strip() for n in select.split(",")] if select else list(fields)
    unknown = [n for n in names if n not in fields and n != "*"]
    if unknown:
        raise ApiError(400, f"Property '{unknown[0]}' does not exist on Me")
    row: dict[str, Any] = {
        "__metadata": {
            "uri": f"{_origin(request)}/api/v1/current/Me(guid'{DEMO_USER['UserID']}')",
            "type": _ME_TYPE,
        }
    }
    row.update({n: fields[n] for n in (list(fields) if "*" in names else names)})
    return web.json_response({"d": {"results": [row]}})


async def get_resource(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    division, entity, key = _entity(request)
    query = _query(request, entity)
    if key is not None:
        row = sim.store.get(division, entity, _parse_key(entity, key))
        if row is None:
            raise ApiError(404, f"{entity.name}({key}) not found.")
        return web.json_response({"d": _row_json(request, division, entity, row, query.select)})
    try:
        page = paginate(sim.store.rows(division, entity), query, entity, sim.settings.page_size)
    except QueryError as exc:
        raise ApiError(400, str(exc)) from exc
    data: dict[str, Any] = {
        "results": [_row_json(request, division, entity, r, query.select) for r in page.rows]
    }
    if query.inlinecount:
        data["__count"] = str(page.count)
    if page.next_token is not None:
        data["__next"] = next_url(_origin(request) + request.path, query, entity, page)
    return web.json_response({"d": data})


async def count_resource(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    division, entity, key = _entity(request)
    if key is not None:
        raise ApiError(400, "$count applies to a collection.")
    query = _query(request, entity)
    rows = sim.store.rows(division, entity)
    count = sum(1 for row in rows if query.predicate is None or query.predicate(row))
    return web.Response(text=str(count), content_type="text/plain")


async def post_resource(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    division, entity, key = _entity(request)
    if entity is not WEBHOOK_SUBSCRIPTIONS or key is not None:
        raise ApiError(405, f"The simulator does not accept POST on {entity.name}.")
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError as exc:
        raise ApiError(400, "The request body is not valid JSON.") from exc
    if not isinstance(body, dict) or not body.get("CallbackURL") or not body.get("Topic"):
        raise ApiError(400, "CallbackURL and Topic are required.")
    if body["Topic"] not in TOPICS:
        raise ApiError(400, f"Invalid topic: {body['Topic']}")
    if body.get("IsInstant") and body["Topic"] != "GoodsDeliveries":
        raise ApiError(400, "IsInstant is only allowed for the topic GoodsDeliveries.")
    failure = await sim.webhooks.validate(str(body["CallbackURL"]))
    if failure is not None:
        raise ApiError(500, f"Invalid: Post to callback URL endpoint returns {failure}")
    description = body.get("Description")
    row = sim.webhooks.subscribe(
        division,
        str(body["CallbackURL"]),
        str(body["Topic"]),
        user=DEMO_USER,
        description=str(description) if description else None,
    )
    return web.json_response({"d": _row_json(request, division, entity, row, None)}, status=201)


async def put_resource(request: web.Request) -> web.Response:
    _, entity, _ = _entity(request)
    if entity is WEBHOOK_SUBSCRIPTIONS:
        raise ApiError(
            400, "Updating a webhook subscription is not allowed; delete it and create a new one."
        )
    raise ApiError(405, f"The simulator does not accept PUT on {entity.name}.")


async def delete_resource(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    division, entity, key = _entity(request)
    if entity is not WEBHOOK_SUBSCRIPTIONS or key is None:
        raise ApiError(405, f"The simulator does not accept DELETE on {entity.name}.")
    try:
        sim.store.delete(division, entity, _parse_key(entity, key))
    except KeyError as exc:
        raise ApiError(404, f"{entity.name}({key}) not found.") from exc
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    """Register the REST routes on ``app``."""
    base = r"/api/v1/{division:\d+}/{service}/{resource}"
    app.router.add_get("/api/v1/current/Me", me)
    app.router.add_get(base + "/$count", count_resource)
    app.router.add_get(base, get_resource)
    app.router.add_post(base, post_resource)
    app.router.add_put(base, put_resource)
    app.router.add_delete(base, delete_resource)
