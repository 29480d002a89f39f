"""Exact's sync APIs: every record changed after a row version, 1,000 rows a page.

    GET /api/v1/{division}/sync/{Service}/{Entity}?$filter=Timestamp gt N&$select=...
    GET /api/v1/{division}/sync/Deleted?$filter=Timestamp gt N
    GET /api/v1/{division}/read/sync/Sync/SyncTimestamp?modified=datetime'...'&endPoint='...'

Exact's KB ("Deleted", "Sync/SyncTimestamp"; reference section 5.5): ``Timestamp`` is a row
version, higher after every insert or change than any before, with no relation to a time;
only ``Timestamp`` may be filtered on; a first sync filters ``Timestamp gt 1``; deletes are
not in the sync feeds but in ``sync/Deleted`` (``EntityKey``, ``EntityType``: 2 Accounts,
5 Contacts, 13 SalesInvoices, 22 PurchaseOrders, 32 SalesOrderHeaders), kept for two months;
``SyncTimestamp`` gives the row version of the first record modified on or after a date
(``TimeStampAsBigInt``). Rows come in row-version order; ``__next`` carries the options and
``$skiptoken`` with the last row version of the page.

``sync/SalesInvoice/SalesInvoices`` in Exact has a row per invoice line besides the header
(``ID`` the row's key, ``InvoiceID`` the invoice's, ``LineNumber``); the simulator keeps no
lines and serves the header row only, with ``ID`` = ``InvoiceID`` and ``LineNumber`` 0. How
Exact marks the header row is not documented where we could read it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from sim_exact.entities import (
    ACCOUNTS,
    CONTACTS,
    PURCHASE_ORDERS,
    SALES_INVOICES,
    SALES_ORDERS,
    EntitySet,
)
from sim_exact.errors import ApiError
from sim_exact.filters import FilterError
from sim_exact.odata import json_value
from sim_exact.state import SIMULATOR
from sim_exact.store import Row, coerce

__all__ = ["DELETED_TYPES", "FEEDS", "SyncFeed", "add_routes"]


@dataclass(frozen=True)
class SyncFeed:
    """A sync endpoint over one entity set; ``header`` adds a line-level ``ID``/``LineNumber``."""

    path: str
    entity: EntitySet
    header: bool = False

    @property
    def fields(self) -> frozenset[str]:
        extra = {"Timestamp", "ID", "LineNumber"} if self.header else {"Timestamp"}
        return frozenset(self.entity.fields) | extra


FEEDS: Mapping[str, SyncFeed] = {
    feed.path: feed
    for feed in (
        SyncFeed("CRM/Accounts", ACCOUNTS),
        SyncFeed("CRM/Contacts", CONTACTS),
        SyncFeed("SalesInvoice/SalesInvoices", SALES_INVOICES, header=True),
        SyncFeed("SalesOrder/SalesOrderHeaders", SALES_ORDERS),
        SyncFeed("PurchaseOrder/PurchaseOrders", PURCHASE_ORDERS),
    )
}
#: ``SyncTimestamp``'s ``endPoint`` value -> feed
_BY_ENDPOINT = {feed.path.split("/")[1]: feed for feed in FEEDS.values()}
#: entity set name -> ``EntityType`` in ``sync/Deleted``
DELETED_TYPES: Mapping[str, int] = {
    ACCOUNTS.name: 2,
    CONTACTS.name: 5,
    SALES_INVOICES.name: 13,
    PURCHASE_ORDERS.name: 22,
    SALES_ORDERS.name: 32,
}
_DELETED_FIELDS = frozenset(
    {"ID", "Timestamp", "EntityKey", "EntityType", "Division", "DeletedBy", "DeletedDate"}
)
_TIMESTAMP_GT = re.compile(r"^\s*Timestamp\s+gt\s+(\d+)\s*$", re.IGNORECASE)
_QUOTED = re.compile(r"^'(.*)'$")


def _after(params: Mapping[str, str]) -> int:
    """The row version the request asks to read after (``$filter`` and ``$skiptoken``)."""
    text = params.get("$filter", "")
    match = _TIMESTAMP_GT.match(text)
    if text and match is None:
        raise ApiError(400, "Only a filter on Timestamp (Timestamp gt <value>) is supported.")
    after = int(match.group(1)) if match else 0
    if "$skiptoken" in params:
        try:
            after = max(after, int(params["$skiptoken"]))
        except ValueError as exc:
            raise ApiError(400, f"Invalid $skiptoken: '{params['$skiptoken']}'") from exc
    return after


def _select(params: Mapping[str, str], fields: frozenset[str]) -> list[str]:
    names = [n.strip() for n in params.get("$select", "").split(",") if n.strip()]
    if not names or "*" in names:
        return sorted(fields)
    unknown = [n for n in names if n not in fields]
    if unknown:
        raise ApiError(400, f"Property '{unknown[0]}' does not exist on this sync API")
    return names


def _page(
    request: web.Request, rows: list[tuple[int, Row]], type_name: str, select: list[str]
) -> web.Response:
    size = request.app[SIMULATOR].settings.sync_page_size
    rows.sort(key=lambda pair: pair[0])
    page = rows[:size]
    results = [
        {"__metadata": {"uri": "", "type": type_name}}
        | {name: json_value(row.get(name)) for name in select}
        for _, row in page
    ]
    data: dict[str, Any] = {"results": results}
    if len(rows) > size:
        params = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        params["$skiptoken"] = str(page[-1][0])
        origin = f"{request.scheme}://{request.host}{request.path}"
        data["__next"] = origin + "?" + urlencode(params, quote_via=quote, safe="$',()")
    return web.json_response({"d": data})


async def get_feed(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    division = int(request.match_info["division"])
    feed = FEEDS.get(f"{request.match_info['service']}/{request.match_info['entity']}")
    if feed is None:
        raise ApiError(404, "Resource not found.")
    after = _after(request.query)
    select = _select(request.query, feed.fields)
    rows: list[tuple[int, Row]] = []
    for row in sim.store.rows(division, feed.entity):
        version = sim.store.version(division, feed.entity, row[feed.entity.key])
        if version > after:
            extra: Row = {"Timestamp": version}
            if feed.header:
                extra |= {"ID": row[feed.entity.key], "LineNumber": 0}
            rows.append((version, row | extra))
    return _page(request, rows, feed.entity.type_name, select)


async def get_deleted(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    division = int(request.match_info["division"])
    after = _after(request.query)
    select = _select(request.query, _DELETED_FIELDS)
    rows: list[tuple[int, Row]] = [
        (
            version,
            {
                "ID": f"00000000-0000-4000-8000-{version:012d}",
                "Timestamp": version,
                "EntityKey": key,
                "EntityType": DELETED_TYPES[entity.name],
                "Division": division,
                "DeletedBy": None,
                "DeletedDate": when,
            },
        )
        for version, entity, key, when in sim.store.deletions(division)
        if version > after and entity.name in DELETED_TYPES
    ]
    return _page(request, rows, "Exact.Web.Api.Models.Sync.Deleted", select)


async def get_sync_timestamp(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    division = int(request.match_info["division"])
    modified, endpoint = request.query.get("modified", ""), request.query.get("endPoint", "")
    quoted = _QUOTED.match(endpoint)
    feed = _BY_ENDPOINT.get(quoted.group(1) if quoted else "")
    if not modified.startswith("datetime'") or feed is None:
        raise ApiError(400, "Both modified (datetime'...') and endPoint ('...') are required.")
    try:
        since = coerce("datetime", modified[len("datetime'") : -1])
    except (TypeError, ValueError, FilterError) as exc:
        raise ApiError(400, f"Invalid modified: {modified}") from exc
    versions = sorted(
        sim.store.version(division, feed.entity, row[feed.entity.key])
        for row in sim.store.rows(division, feed.entity)
        if row["Modified"] is not None and row["Modified"] >= since
    )
    row = {"Modified": since, "API": feed.path.split("/")[1], "TimeStampAsBigInt": None}
    if versions:
        row["TimeStampAsBigInt"] = versions[0]
    return _page(request, [(0, row)], "Exact.Web.Api.Models.Sync.SyncTimestamp", sorted(row))


def add_routes(app: web.Application) -> None:
    """Register the sync routes (before the generic REST routes, which they would match)."""
    app.router.add_get(r"/api/v1/{division:\d+}/sync/Deleted", get_deleted)
    app.router.add_get(r"/api/v1/{division:\d+}/read/sync/Sync/SyncTimestamp", get_sync_timestamp)
    app.router.add_get(r"/api/v1/{division:\d+}/sync/{service}/{entity}", get_feed)
