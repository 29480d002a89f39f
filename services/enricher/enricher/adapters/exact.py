"""ExactClient: reads records from the Exact Online REST API (OData over JSON).

Every request goes through the ``RateGovernor`` (pacing, 429s, the hourly error budget). Many
keys are read with one filtered request, ``$filter=ID eq guid'a' or ID eq guid'b' ...``,
split so that no URL passes Exact's 6,000 characters after encoding, each followed through
its ``__next`` pages.

Error mapping at this boundary: 401 -> one token refresh and replay, then PermanentError;
404 -> no rows (the records are gone: never retried); 429 -> waited out by the governor, or
its TransientError until the reset; 403 (possibly the hourly block after too many errors) ->
TransientError at the longest retry tier; 5xx, 200 without JSON and network errors ->
TransientError (reads are safe to repeat); other 4xx -> PermanentError.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx

from common.contracts import AccessToken
from common.errors import PermanentError, TransientError
from enricher.governor import RateGovernor
from enricher.ports import Record, TokenSource

__all__ = ["MAX_URL_LENGTH", "ExactClient", "endpoint_of", "filter_chunks"]

#: Exact refuses URLs longer than this after encoding (KB ``Restrictions.md``).
MAX_URL_LENGTH = 6000
#: Room kept below the limit for what Exact adds to the ``__next`` link ($skiptoken=guid'..').
_NEXT_LINK_ROOM = 200

_RESOURCE_PATH = re.compile(r"/api/v1/\d+/([^/?(]+/[^/?(]+)")


def endpoint_of(url: str) -> str:
    """The resource path of a request URL (``salesinvoice/SalesInvoices``), never an id: the
    metric label and the unit of Exact's error budget."""
    match = _RESOURCE_PATH.search(url)
    return match.group(1) if match else "other"


def _url_length(base: str, filter_: str, select: str) -> int:
    # Counted as the longest encoding anyone may give it (space as %20, quotes as %27): Exact
    # re-encodes the options into its __next link, which must stay under the limit too.
    options = "&".join(
        f"{k}={quote(v, safe='')}" for k, v in (("$filter", filter_), ("$select", select))
    )
    return len(base) + 1 + len(options)


def filter_chunks(
    base: str, field: str, values: Sequence[UUID], select: str, *, limit: int = MAX_URL_LENGTH
) -> Iterator[str]:
    """``field eq guid'..' or ...`` filters covering ``values``, each making a request URL of
    at most ``limit`` characters once encoded (fewest requests: filled greedily)."""
    terms = [f"{field} eq guid'{value}'" for value in dict.fromkeys(values)]
    budget = limit - _NEXT_LINK_ROOM
    chunk: list[str] = []
    for term in terms:
        candidate = " or ".join([*chunk, term])
        if chunk and _url_length(base, candidate, select) > budget:
            yield " or ".join(chunk)
            chunk = [term]
        else:
            chunk.append(term)
    if chunk:
        yield " or ".join(chunk)


class ExactClient:
    """Implements ``ExactBulkReader`` (and ``reconcile.FilteredReader``)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        tokens: TokenSource,
        governor: RateGovernor,
        *,
        max_url_length: int = MAX_URL_LENGTH,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._governor = governor
        self._max_url_length = max_url_length

    async def get_where_in(
        self,
        connection_id: str,
        division: int,
        resource: str,
        field: str,
        values: Sequence[UUID],
        select: list[str],
    ) -> list[Record]:
        token = await self._tokens.get(connection_id)
        base = f"{token.base_url.rstrip('/')}/api/v1/{division}/{resource}"
        columns = ",".join(select)
        rows: list[Record] = []
        for filter_ in filter_chunks(base, field, values, columns, limit=self._max_url_length):
            rows.extend(
                await self._pages(
                    connection_id, division, base, {"$filter": filter_, "$select": columns}
                )
            )
        return rows

    async def get_filtered(
        self, connection_id: str, division: int, resource: str, filter_: str, select: list[str]
    ) -> list[Record]:
        """Every record matching an OData ``$filter`` (all pages)."""
        token = await self._tokens.get(connection_id)
        base = f"{token.base_url.rstrip('/')}/api/v1/{division}/{resource}"
        params = {"$filter": filter_, "$select": ",".join(select)}
        return await self._pages(connection_id, division, base, params)

    async def _pages(
        self, connection_id: str, division: int, url: str, params: dict[str, str] | None
    ) -> list[Record]:
        rows: list[Record] = []
        next_url: str | None = url
        while next_url:
            body = await self._get(connection_id, division, next_url, params)
            if body is None:
                break
            data = body["d"]
            rows.extend(data.get("results", []))
            # Exact's paging is sequential only: __next carries every query option.
            next_url, params = data.get("__next"), None
        return rows

    async def _get(
        self, connection_id: str, division: int, url: str, params: dict[str, str] | None
    ) -> Any:
        endpoint = endpoint_of(url)
        token = await self._tokens.get(connection_id)
        response = await self._send(connection_id, division, endpoint, url, params, token)
        if response.status_code == 401:
            token = await self._tokens.refresh(connection_id, token.fingerprint)
            response = await self._send(connection_id, division, endpoint, url, params, token)
        status = response.status_code
        if status == 404:
            return None
        if status >= 500:
            raise TransientError(f"Exact answered {status}", code=status)
        if status == 403:
            # Exact blocks an app for the rest of the hour once it spent its error budget
            # (and answers 403): later, at the longest tier, not parked as permanent.
            raise TransientError(
                f"Exact refused the request (403): {response.text[:200]}",
                code=403,
                retry_after=1800,
            )
        if status >= 400:
            raise PermanentError(f"Exact answered {status}: {response.text[:200]}", code=status)
        if "json" not in response.headers.get("Content-Type", ""):
            # Exact sometimes serves a maintenance page with 200.
            raise TransientError("Exact answered 200 without JSON", code="not_json")
        return response.json()

    async def _send(
        self,
        connection_id: str,
        division: int,
        endpoint: str,
        url: str,
        params: dict[str, str] | None,
        token: AccessToken,
    ) -> httpx.Response:
        headers = {
            "Accept": "application/json",
            "Authorization": "Bearer " + token.access_token.get_secret_value(),
        }

        async def send() -> httpx.Response:
            return await self._client.get(url, params=params, headers=headers)

        try:
            return await self._governor.call(connection_id, division, endpoint, send)
        except httpx.TransportError as exc:
            raise TransientError(f"Exact unreachable: {type(exc).__name__}") from exc
