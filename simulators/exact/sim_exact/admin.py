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
    POST   /_sim/invoices/bulk              {"invoices": [invoice bodies as above]} -> 201 drafts
    POST   /_sim/invoices/bulk/issue        {"ids": [...]} -> issued records, all webhooks fired
                                            together (an invoicing run); 409 if any was issued
    POST   /_sim/invoices/{id}/pay          its receivable fully paid (409 when not issued/paid)
    DELETE /_sim/invoices/{id}              Delete webhook
    POST   /_sim/entities/{Entity}          any entity set by name (SalesOrders, PurchaseOrders)
    GET    /_sim/entities/{Entity}; PATCH and DELETE /_sim/entities/{Entity}/{id}

The clock, faults, subscriptions and records of what happened are in ``control``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
from sim_exact.state import Simulator
from sim_exact.store import Row

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


def _new_invoice(sim: Simulator, body: dict[str, Any]) -> Row:
    if "amount" not in body:
        raise AdminError(400, "amount is required")
    return sim.documents.create_invoice(
        division_of(sim, body.get("division")),
        account_id=body.get("account_id") or sim.seed.account_id,
        amount=float(body["amount"]),
        currency=str(body.get("currency") or "EUR"),
        description=body.get("description"),
        extra={k: v for k, v in body.items() if k not in _INVOICE_KEYS},
    )


async def create_invoice(request: web.Request) -> web.Response:
    row = _new_invoice(simulator(request), await json_body(request))
    return web.json_response(record(row), status=201)


async def create_invoices(request: web.Request) -> web.Response:
    sim = simulator(request)
    bodies = (await json_body(request)).get("invoices")
    if not isinstance(bodies, list) or not all(isinstance(b, dict) for b in bodies):
        raise AdminError(400, "invoices must be a list of invoice objects")
    rows = [_new_invoice(sim, body) for body in bodies]
    return web.json_response([record(row) for row in rows], status=201)


def _issue(sim: Simulator, invoice_id: str) -> Row:
    try:
        return sim.documents.issue_invoice(invoice_id)
    except ValueError as exc:
        raise AdminError(409, str(exc)) from exc


async def issue_invoice(request: web.Request) -> web.Response:
    return web.json_response(record(_issue(simulator(request), request.match_info["id"])))


async def issue_invoices(request: web.Request) -> web.Response:
    sim = simulator(request)
    ids = (await json_body(request)).get("ids")
    if not isinstance(ids, list):
        raise AdminError(400, "ids must be a list of invoice ids")
    ids = list(dict.fromkeys(str(invoice_id) for invoice_id in ids))
    for invoice_id in ids:  # all or nothing: check every one before issuing any
        found = sim.store.find(SALES_INVOICES, invoice_id)
        if found is None:
            raise AdminError(404, f"SalesInvoices {invoice_id} not found")
        if found[1]["Status"] == 50:
            raise AdminError(409, f"invoice {invoice_id} is already processed")
    return web.json_response([record(_issue(sim, invoice_id)) for invoice_id in ids])


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
    # before /_sim/invoices/{id}/issue, which would take "bulk" for an id
    r.add_post("/_sim/invoices/bulk", create_invoices)
    r.add_post("/_sim/invoices/bulk/issue", issue_invoices)
    r.add_post("/_sim/invoices/{id}/issue", issue_invoice)
    r.add_post("/_sim/invoices/{id}/pay", pay_invoice)
    r.add_patch("/_sim/{alias:invoices}/{id}", edit_record)
    r.add_delete("/_sim/{alias:invoices}/{id}", delete_record)
    for prefix in ("/_sim/{alias:accounts|contacts}", "/_sim/entities/{entity}"):
        r.add_post(prefix, create_record)
        r.add_get(prefix, list_records)
        r.add_patch(prefix + "/{id}", edit_record)
        r.add_delete(prefix + "/{id}", delete_record)
