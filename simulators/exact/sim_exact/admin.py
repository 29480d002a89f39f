"""Admin routes that change Exact records (JSON, no auth), for tests and the demo.

Records are given and returned with Exact's field names, dates as ``/Date(ms)/``; every change
fires webhooks exactly as a change in Exact would::

    POST   /_sim/divisions                  {"Code", "Description"?}
    POST   /_sim/accounts | /_sim/contacts  {Exact fields, "Division"?} -> 201 record
    GET    /_sim/accounts | /_sim/contacts  ?division=
    PATCH  /_sim/accounts/{id} | /_sim/contacts/{id}   {fields}; DELETE the same
    POST   /_sim/invoices                   {"amount", "account_id"?, "currency"?, "description"?,
                                             "division"?, Exact fields...} -> draft (Status 10)
    PATCH  /_sim/invoices/{id}              {fields}
    POST   /_sim/invoices/{id}/issue        Status 50 + InvoiceNumber (409 when already issued)
                                            and an open receivable for it
    POST   /_sim/invoices/{id}/pay          its receivable fully paid (409 when not issued/paid)
    DELETE /_sim/invoices/{id}              Delete webhook
    POST   /_sim/entities/{Entity}          any entity set by name (SalesOrders, PurchaseOrders)
    GET    /_sim/entities/{Entity}; PATCH and DELETE /_sim/entities/{Entity}/{id}

The clock, faults, subscriptions and records of what happened are in ``control``.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from sim_exact.admin_http import (
    AdminError,
    admin_errors,
    division_of,
    json_body,
    record,
    simulator,
)
from sim_exact.entities import ACCOUNTS, BY_NAME, CONTACTS, SALES_INVOICES, EntitySet

__all__ = ["add_routes"]

_ALIASES: Mapping[str, EntitySet] = {
    "accounts": ACCOUNTS,
    "contacts": CONTACTS,
    "invoices": SALES_INVOICES,
}
_INVOICE_KEYS = {"account_id", "amount", "currency", "description", "division"}


def _entity(request: web.Request) -> EntitySet:
    name = request.match_info.get("alias") or request.match_info.get("entity", "")
    entity = _ALIASES.get(name) or BY_NAME.get(name)
    if entity is None:
        raise AdminError(404, f"unknown entity set {name!r}")
    return entity


async def create_record(request: web.Request) -> web.Response:
    sim, entity = simulator(request), _entity(request)
    body = await json_body(request)
    division = division_of(sim, body.pop("Division", body.pop("division", None)))
    return web.json_response(record(sim.documents.create(division, entity, body)), status=201)


async def list_records(request: web.Request) -> web.Response:
    sim, entity = simulator(request), _entity(request)
    division = division_of(sim, request.query.get("division"))
    return web.json_response([record(row) for row in sim.store.rows(division, entity)])


async def edit_record(request: web.Request) -> web.Response:
    sim, entity = simulator(request), _entity(request)
    row = sim.documents.edit(entity, request.match_info["id"], await json_body(request))
    return web.json_response(record(row))


async def delete_record(request: web.Request) -> web.Response:
    sim, entity = simulator(request), _entity(request)
    return web.json_response(record(sim.documents.delete(entity, request.match_info["id"])))


async def create_invoice(request: web.Request) -> web.Response:
    sim = simulator(request)
    body = await json_body(request)
    if "amount" not in body:
        raise AdminError(400, "amount is required")
    row = sim.documents.create_invoice(
        division_of(sim, body.get("division")),
        account_id=body.get("account_id") or sim.seed.account_id,
        amount=float(body["amount"]),
        currency=str(body.get("currency") or "EUR"),
        description=body.get("description"),
        extra={k: v for k, v in body.items() if k not in _INVOICE_KEYS},
    )
    return web.json_response(record(row), status=201)


async def issue_invoice(request: web.Request) -> web.Response:
    sim = simulator(request)
    try:
        row = sim.documents.issue_invoice(request.match_info["id"])
    except ValueError as exc:
        raise AdminError(409, str(exc)) from exc
    return web.json_response(record(row))


async def pay_invoice(request: web.Request) -> web.Response:
    sim = simulator(request)
    try:
        row = sim.documents.pay_invoice(request.match_info["id"])
    except ValueError as exc:
        raise AdminError(409, str(exc)) from exc
    return web.json_response(record(row))


async def add_division(request: web.Request) -> web.Response:
    sim = simulator(request)
    body = await json_body(request)
    code = int(body.pop("Code"))
    if sim.store.has_division(code):
        raise AdminError(409, f"division {code} exists")
    row = sim.store.add_division(code, **{"Description": f"Division {code}", **body})
    return web.json_response(record(row), status=201)


def add_routes(app: web.Application) -> None:
    """Register the record routes and the admin error middleware on ``app``."""
    app.middlewares.append(admin_errors)
    r = app.router
    r.add_post("/_sim/divisions", add_division)
    r.add_post("/_sim/invoices", create_invoice)
    r.add_post("/_sim/invoices/{id}/issue", issue_invoice)
    r.add_post("/_sim/invoices/{id}/pay", pay_invoice)
    r.add_patch("/_sim/{alias:invoices}/{id}", edit_record)
    r.add_delete("/_sim/{alias:invoices}/{id}", delete_record)
    for prefix in ("/_sim/{alias:accounts|contacts}", "/_sim/entities/{entity}"):
        r.add_post(prefix, create_record)
        r.add_get(prefix, list_records)
        r.add_patch(prefix + "/{id}", edit_record)
        r.add_delete(prefix + "/{id}", delete_record)
