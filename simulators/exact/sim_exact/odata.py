"""OData query options, paging and the JSON envelopes Exact answers with.

- ``$filter`` (see ``filters``; a tree past ``node_limit`` nodes is refused), ``$select``
  (unknown field -> 400), ``$orderby``, ``$top``, ``$skip``, ``$inlinecount=allpages`` (adds
  ``__count``), ``$skiptoken``.
- Pages hold ``page_size`` rows (60, as Exact's standard endpoints). When more rows match,
  ``d.__next`` is the full URL of the next page: the same options plus
  ``$skiptoken=guid'<key of the last row>'`` (rows are in key order unless ``$orderby`` says
  otherwise; the key breaks ties).
- Collection ``{"d": {"results": [...], "__next": ...}}``; one record ``{"d": {...}}``; each row
  has ``__metadata {uri, type}``; dates are ``"/Date(<epoch ms>)/"``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from sim_exact.clock import epoch_ms
from sim_exact.entities import EntitySet
from sim_exact.filters import FilterError, Predicate, parse_filter
from sim_exact.store import Row

__all__ = [
    "Page",
    "Query",
    "QueryError",
    "json_value",
    "next_url",
    "paginate",
    "parse_query",
    "serialize",
]


class QueryError(ValueError):
    """An invalid query option (the API answers 400 with this message)."""


@dataclass(frozen=True)
class Query:
    """Parsed query options of one request."""

    predicate: Predicate | None = None
    select: tuple[str, ...] | None = None
    orderby: tuple[tuple[str, bool], ...] = ()
    top: int | None = None
    skip: int = 0
    skiptoken: Any = None
    inlinecount: bool = False
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One page of results and what is needed to build ``__next``."""

    rows: list[Row]
    count: int
    next_token: Any | None


def _nonnegative(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise QueryError(f"Invalid value for {name}: '{value}'")
    return number


def _parse_skiptoken(text: str, entity: EntitySet) -> Any:
    value = text[5:-1] if text.startswith("guid'") and text.endswith("'") else text
    try:
        if entity.fields[entity.key] == "guid":
            return str(uuid.UUID(value))
        return int(value)
    except ValueError as exc:
        raise QueryError(f"Invalid $skiptoken: '{text}'") from exc


def parse_query(
    params: Mapping[str, str], entity: EntitySet, *, node_limit: int | None = None
) -> Query:
    """Validate and parse the ``$`` options of a request against ``entity``'s fields."""
    fields = frozenset(entity.fields)
    select: tuple[str, ...] | None = None
    if params.get("$select"):
        names = tuple(name.strip() for name in params["$select"].split(",") if name.strip())
        if "*" not in names:
            unknown = [name for name in names if name not in fields]
            if unknown:
                raise QueryError(f"Property '{unknown[0]}' does not exist on {entity.name}")
            select = names
    orderby: list[tuple[str, bool]] = []
    for part in filter(None, (p.strip() for p in params.get("$orderby", "").split(","))):
        name, _, direction = part.partition(" ")
        if name not in fields or direction.strip().lower() not in ("", "asc", "desc"):
            raise QueryError(f"Invalid $orderby: '{part}'")
        orderby.append((name, direction.strip().lower() == "desc"))
    predicate = None
    if params.get("$filter"):
        try:
            predicate = parse_filter(params["$filter"], fields, node_limit=node_limit)
        except FilterError as exc:
            raise QueryError(str(exc)) from exc
    inlinecount = params.get("$inlinecount", "none")
    if inlinecount not in ("none", "allpages"):
        raise QueryError(f"Invalid $inlinecount: '{inlinecount}'")
    return Query(
        predicate=predicate,
        select=select,
        orderby=tuple(orderby),
        top=_nonnegative("$top", params["$top"]) if "$top" in params else None,
        skip=_nonnegative("$skip", params["$skip"]) if "$skip" in params else 0,
        skiptoken=_parse_skiptoken(params["$skiptoken"], entity)
        if "$skiptoken" in params
        else None,
        inlinecount=inlinecount == "allpages",
        raw=dict(params),
    )


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value)


def _field_key(name: str) -> Callable[[Row], tuple[int, Any]]:
    return lambda row: _sort_key(row[name])


def paginate(rows: Sequence[Row], query: Query, entity: EntitySet, page_size: int) -> Page:
    """Filter, order and cut ``rows`` into the page the query asks for."""
    try:
        matching = [row for row in rows if query.predicate is None or query.predicate(row)]
    except FilterError as exc:
        raise QueryError(str(exc)) from exc
    matching.sort(key=lambda row: _sort_key(row[entity.key]))
    for name, descending in reversed(query.orderby):
        matching.sort(key=_field_key(name), reverse=descending)
    count = len(matching)
    start = query.skip
    if query.skiptoken is not None:
        keys = [row[entity.key] for row in matching]
        if query.skiptoken in keys:
            start = keys.index(query.skiptoken) + 1
        elif not query.orderby:
            start = sum(1 for key in keys if _sort_key(key) <= _sort_key(query.skiptoken))
        else:
            raise QueryError("The $skiptoken row no longer exists; restart the query")
    limit = page_size if query.top is None else min(page_size, query.top)
    page = matching[start : start + limit]
    more = start + limit < len(matching) and (query.top is None or query.top > limit)
    return Page(page, count, page[-1][entity.key] if more and page else None)


def next_url(base: str, query: Query, entity: EntitySet, page: Page) -> str:
    """The ``__next`` URL: ``base`` (scheme, host, path) with the options of the next page."""
    params = {k: v for k, v in query.raw.items() if k not in ("$skiptoken", "$skip")}
    if query.top is not None:
        params["$top"] = str(query.top - len(page.rows))
    params["$skiptoken"] = entity.key_literal(page.next_token)
    return base + "?" + urlencode(params, quote_via=quote, safe="$',()")


def json_value(value: Any) -> Any:
    """A stored value in Exact's JSON form (dates as ``/Date(ms)/``)."""
    if isinstance(value, datetime):
        return f"/Date({epoch_ms(value)})/"
    return value


def serialize(
    row: Row, entity: EntitySet, select: Sequence[str] | None, uri: str
) -> dict[str, Any]:
    """One row as Exact returns it: ``__metadata`` first, then the (selected) fields."""
    names = select if select is not None else list(entity.fields)
    out: dict[str, Any] = {"__metadata": {"uri": uri, "type": entity.type_name}}
    out.update({name: json_value(row.get(name)) for name in names})
    return out
