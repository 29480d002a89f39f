"""Admin routes that steer the simulator and report what it did (JSON, no auth)::

    GET    /_sim/seed                       seeded ids (division, account, contacts, user)
    GET    /_sim/clock | POST {"advance_seconds": n}     -> {"now", "epoch_ms"}
    POST   /_sim/faults {"kind", "count"?, "path_contains"?, "seconds"?}; GET; DELETE (clear)
    POST   /_sim/subscriptions {"callback_url", "topic", "division"?, "validate"?}; GET;
    DELETE /_sim/subscriptions/{id}
    GET    /_sim/requests?path_contains=&division=&status=
    GET    /_sim/webhooks                   deliveries
    GET    /_sim/stats                      calls and 429s per division, errors per endpoint,
                                            token chains, webhook outcomes
    POST   /_sim/reset {"tokens"?: false, "data"?: false}   clears faults, records and counters;
                                            tokens: back to the configured refresh token;
                                            data: records back to the seed

Everything lives in memory: a restarted simulator starts again from the seed.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp import web

from sim_exact.admin_http import (
    AdminError,
    division_of,
    json_body,
    record,
    simulator,
)
from sim_exact.clock import epoch_ms
from sim_exact.documents import Documents
from sim_exact.entities import TOPICS, WEBHOOK_SUBSCRIPTIONS
from sim_exact.seed import DEMO_USER, seed
from sim_exact.state import Simulator

__all__ = ["STARTUP_TOPICS", "add_routes", "subscribe_callback_url"]

#: Topics subscribed at start when ``callback_url`` is set.
STARTUP_TOPICS = (
    "SalesInvoices",
    "SalesEntries",
    "SalesOrders",
    "PurchaseOrders",
    "PurchaseInvoices",
    "PurchaseEntries",
    "Accounts",
    "Contacts",
)


def _clock_view(sim: Simulator) -> dict[str, Any]:
    now = sim.clock.now_dt()
    return {"now": now.isoformat(), "epoch_ms": epoch_ms(now)}


async def get_clock(request: web.Request) -> web.Response:
    return web.json_response(_clock_view(simulator(request)))


async def advance_clock(request: web.Request) -> web.Response:
    sim = simulator(request)
    body = await json_body(request)
    sim.clock.advance(float(body.get("advance_seconds", 0)))
    return web.json_response(_clock_view(sim))


async def add_fault(request: web.Request) -> web.Response:
    body = await json_body(request)
    fault = simulator(request).faults.add(
        str(body.get("kind")),
        int(body.get("count", 1)),
        body.get("path_contains"),
        None if body.get("seconds") is None else float(body["seconds"]),
    )
    return web.json_response(fault.as_dict(), status=201)


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response(simulator(request).faults.pending())


async def clear_faults(request: web.Request) -> web.Response:
    simulator(request).faults.clear()
    return web.json_response({"cleared": True})


def subscribe_callback_url(sim: Simulator) -> None:
    """Subscribe the default division to ``STARTUP_TOPICS`` when ``callback_url`` is set."""
    if sim.settings.callback_url:
        for topic in STARTUP_TOPICS:
            sim.webhooks.subscribe(
                sim.settings.exact_division, sim.settings.callback_url, topic, user=DEMO_USER
            )


async def add_subscription(request: web.Request) -> web.Response:
    sim = simulator(request)
    body = await json_body(request)
    division = division_of(sim, body.get("division"))
    url, topic = body.get("callback_url"), body.get("topic")
    if not url or topic not in TOPICS:
        raise AdminError(400, "callback_url and a known topic are required")
    if body.get("validate"):
        failure = await sim.webhooks.validate(str(url))
        if failure is not None:
            raise AdminError(500, f"Invalid: Post to callback URL endpoint returns {failure}")
    row = sim.webhooks.subscribe(division, str(url), str(topic), user=DEMO_USER)
    return web.json_response(record(row), status=201)


async def list_subscriptions(request: web.Request) -> web.Response:
    sim = simulator(request)
    rows = [
        row
        for division in sim.store.divisions()
        for row in sim.store.rows(division, WEBHOOK_SUBSCRIPTIONS)
    ]
    return web.json_response([record(row) for row in rows])


async def delete_subscription(request: web.Request) -> web.Response:
    sim = simulator(request)
    entity = WEBHOOK_SUBSCRIPTIONS
    found = sim.store.find(entity, request.match_info["id"])
    if found is None:
        raise AdminError(404, "subscription not found")
    sim.store.delete(found[0], entity, request.match_info["id"])
    return web.json_response({"deleted": True})


# records of what happened ------------------------------------------------------------------


async def list_requests(request: web.Request) -> web.Response:
    query = request.query
    records = simulator(request).calls.records(
        path_contains=query.get("path_contains"),
        division=int(query["division"]) if "division" in query else None,
        status=int(query["status"]) if "status" in query else None,
    )
    return web.json_response(records)


async def list_webhooks(request: web.Request) -> web.Response:
    return web.json_response(simulator(request).webhooks.records())


async def stats(request: web.Request) -> web.Response:
    sim = simulator(request)
    divisions = sim.limiter.stats()
    by_endpoint = Counter(record["endpoint"] for record in sim.calls.records())
    return web.json_response(
        {
            "calls": {division: s["calls"] for division, s in divisions.items()},
            "rate_limited": {division: s["rate_limited"] for division, s in divisions.items()},
            "remaining": {
                division: {"minutely": s["minutely_remaining"], "daily": s["daily_remaining"]}
                for division, s in divisions.items()
            },
            "calls_by_endpoint": dict(by_endpoint),
            "errors": sim.errors.stats(),
            "token_chains": sim.oauth.stats(),
            "webhooks": sim.webhooks.summary(),
            "faults_pending": len(sim.faults.pending()),
        }
    )


async def reset(request: web.Request) -> web.Response:
    sim = simulator(request)
    body = await json_body(request)
    sim.faults.clear()
    sim.calls.clear()
    sim.webhooks.deliveries.clear()
    sim.limiter.reset()
    sim.errors.reset()
    if body.get("tokens"):
        sim.oauth.reset()
    if body.get("data"):
        sim.store.clear()
        sim.documents = Documents(sim.store, sim.clock)
        sim.seed = seed(sim.store, sim.documents, sim.settings.exact_division)
        subscribe_callback_url(sim)
    return web.json_response({"reset": True})


async def get_seed(request: web.Request) -> web.Response:
    sim = simulator(request)
    return web.json_response({**sim.seed.as_dict(), "client_id": sim.settings.exact_client_id})


def add_routes(app: web.Application) -> None:
    """Register the control routes on ``app``."""
    r = app.router
    r.add_get("/_sim/seed", get_seed)
    r.add_get("/_sim/clock", get_clock)
    r.add_post("/_sim/clock", advance_clock)
    r.add_post("/_sim/faults", add_fault)
    r.add_get("/_sim/faults", list_faults)
    r.add_delete("/_sim/faults", clear_faults)
    r.add_post("/_sim/subscriptions", add_subscription)
    r.add_get("/_sim/subscriptions", list_subscriptions)
    r.add_delete("/_sim/subscriptions/{id}", delete_subscription)
    r.add_get("/_sim/requests", list_requests)
    r.add_get("/_sim/webhooks", list_webhooks)
    r.add_get("/_sim/stats", stats)
    r.add_post("/_sim/reset", reset)
