"""Pieces of a 2010-04-01 list endpoint: page size and number, date filters, the page body.

A page carries its resources under a key named after them (``calls``) next to ``page``,
``page_size``, ``start``, ``end`` and the ``first``/``next``/``previous_page_uri`` links
(``next_page_uri`` is ``null`` on the last page); the links repeat the request's filters. A
date filter is a parameter *name* ending in ``<`` or ``>``: ``?StartTime>=2026-11-30`` reads as
``StartTime>`` = ``2026-11-30``, "on or after".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from sim_twilio.errors import TwilioError

__all__ = ["DateBounds", "date_bounds", "page_body", "page_params", "within"]

#: (operator, bound) pairs: ``""`` on that day/moment, ``"<"`` on or before, ``">"`` on or after.
DateBounds = list[tuple[str, date | datetime]]

_PAGING = ("Page", "PageSize", "PageToken")


def page_params(
    query: Mapping[str, str], default: int, minimum: int, maximum: int
) -> tuple[int, int]:
    """(page size, page number) from the query; 400 when the size is outside the bounds."""
    try:
        page_size = int(query.get("PageSize", default))
    except ValueError:
        raise TwilioError(400, param="PageSize") from None
    try:
        page = max(0, int(query.get("Page", 0)))
    except ValueError:
        raise TwilioError(400, param="Page") from None
    if not minimum <= page_size <= maximum:
        raise TwilioError(400, param="PageSize", value=page_size)
    return page_size, page


def _day_or_moment(name: str, value: str) -> date | datetime:
    """``YYYY-MM-DD`` (Twilio's documented form) or an ISO date-time (what the SDK sends)."""
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TwilioError(400, param=name) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def date_bounds(query: Mapping[str, str], name: str) -> DateBounds:
    """The ``name`` / ``name<`` / ``name>`` filters present in the query."""
    return [
        (op, _day_or_moment(name + op, query[name + op]))
        for op in ("", "<", ">")
        if name + op in query
    ]


def within(moment: datetime, bounds: DateBounds) -> bool:
    """``moment`` satisfies every bound; a day bound compares the UTC day only."""
    for op, bound in bounds:
        left: date | datetime = moment if isinstance(bound, datetime) else moment.date()
        if (op == "" and left != bound) or (op == "<" and left > bound):
            return False
        if op == ">" and left < bound:
            return False
    return True


def page_body(
    key: str,
    found: Sequence[dict[str, Any]],
    query: Mapping[str, str],
    base: str,
    page: int,
    page_size: int,
) -> dict[str, Any]:
    """Page ``page`` of ``found`` (already filtered and ordered) as Twilio shapes it."""
    start = page * page_size
    chunk = list(found[start : start + page_size])
    filters = [(k, v) for k, v in query.items() if k not in _PAGING]

    def uri(number: int) -> str:
        return base + "?" + urlencode([*filters, ("PageSize", page_size), ("Page", number)])

    return {
        key: chunk,
        "end": start + max(len(chunk) - 1, 0),
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if start + page_size < len(found) else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": uri(page),
    }
