"""ExactClient: reads records from the Exact Online REST API (OData over JSON).

Every request goes through the ``RateGovernor`` (pacing, 429s, the hourly error budget). Many
keys are read with one filtered request, ``$filter=ID eq guid'a' or ID eq guid'b' ...``,
split so that no request has more than ``max_terms`` terms (Exact documents no limit on a
filter's size, but OData stacks refuse large expression trees: ASP.NET Web API OData's
default ``MaxNodeCount`` of 100 admits about 20 such terms) and no URL passes Exact's 6,000
characters after encoding, each followed through its ``__next`` pages.

A filter of several terms refused with 400 is split in halves and read again, down to single
keys; the halves' size becomes the endpoint's ceiling for the rest of the process, so one
too-large filter is refused once, not on every batch. Of the refusals while recovering, only
the first counts against the endpoint's hourly error budget::

    [k1..k16] ─400─▶ ceiling 8 ─▶ [k1..k8] ─200─▶ rows
                                  [k9..k16] ─200─▶ rows     (1 error counted, not 1 per split)

Error mapping at this boundary: 401 -> one token refresh and replay, then PermanentError;
404 -> no rows (the records are gone: never retried); 429 -> waited out by the governor, or
its TransientError until the reset; 403 (possibly the hourly block after too many errors) ->
TransientError at the longest retry tier; 5xx, 200 without JSON and network errors ->
TransientError (reads are safe to repeat); other 4xx -> PermanentError.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote
from uuid import UUID

import httpx
import structlog

from common.contracts import AccessToken
from common.errors import PermanentError, TransientError
from enricher.governor import RateGovernor
from enricher.ports import Record, TokenSource

__all__ = ["MAX_FILTER_TERMS", "MAX_URL_LENGTH", "ExactClient", "endpoint_of", "filter_chunks"]

log = structlog.get_logger("enricher")

#: Exact refuses URLs longer than this after encoding (KB ``Restrictions.md``).
MAX_URL_LENGTH = 6000
#: ``Key eq guid'..'`` terms per filter unless told otherwise: 4 nodes each, so 15 stay well
#: under the 100 nodes the strictest OData stack we know of accepts by default.
MAX_FILTER_TERMS = 15
#: Room kept below the limit for what Exact adds to the ``__next`` link ($skiptoken=guid'..').
_NEXT_LINK_ROOM = 200

_RESOURCE_PATH = re.compile(
    r"/api/v1/\d+/(read/sync/[^/?(]+/[^/?(]+|sync/Deleted|sync/[^/?(]+/[^/?(]+|[^/?(]+/[^/?(]+)"
)


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


def _term_chunks(
    base: str, terms: Sequence[str], select: str, *, limit: int, max_terms: int
) -> Iterator[list[str]]:
    budget = limit - _NEXT_LINK_ROOM
    chunk: list[str] = []
    for term in terms:
        candidate = " or ".join([*chunk, term])
        if chunk and (len(chunk) >= max_terms or _url_length(base, candidate, select) > budget):
            yield chunk
            chunk = [term]
        else:
            chunk.append(term)
    if chunk:
        yield chunk


def filter_chunks(
    base: str,
    field: str,
    values: Sequence[UUID],
    select: str,
    *,
    limit: int = MAX_URL_LENGTH,
    max_terms: int = MAX_FILTER_TERMS,
) -> Iterator[str]:
    """``field eq guid'..' or ...`` filters covering ``values``, each of at most ``max_terms``
    terms and making a request URL of at most ``limit`` characters once encoded (fewest
    requests: filled greedily)."""
    terms = [f"{field} eq guid'{value}'" for value in dict.fromkeys(values)]
    for chunk in _term_chunks(base, terms, select, limit=limit, max_terms=max(1, max_terms)):
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
        max_terms: int = MAX_FILTER_TERMS,
    ) -> None:
        self._client = client
        self._tokens = tokens
        self._governor = governor
        self._max_url_length = max_url_length
        self._max_terms = max(1, max_terms)
        #: endpoint -> terms per filter it accepted after refusing more (learnt from 400s)
        self._ceilings: dict[str, int] = {}

    def max_terms(self, endpoint: str) -> int:
        """Terms per filter for ``endpoint``: the setting, or less once Exact refused it."""
        return min(self._max_terms, self._ceilings.get(endpoint, self._max_terms))

    async def get_where_in(
        self,
        connection_id: str,
        division: int,
        resource: str,
        field: str,
        values: Sequence[UUID],
        select: list[str],
        *,
        changed_before: datetime | None = None,
    ) -> list[Record]:
        """Every record whose ``field`` is one of ``values``; a filtered read is always
        current, so ``changed_before`` asks nothing more of it."""
        token = await self._tokens.get(connection_id)
        base = f"{token.base_url.rstrip('/')}/api/v1/{division}/{resource}"
        endpoint = endpoint_of(base)
        columns = ",".join(select)
        terms = [f"{field} eq guid'{value}'" for value in dict.fromkeys(values)]
        pending = deque(self._chunks(base, endpoint, terms, columns))
        rows: list[Record] = []
        #: once one refusal was counted, the requests that recover from it are not
        counted = False
        while pending:
            chunk = pending.popleft()
            if len(chunk) > self.max_terms(endpoint):  # the ceiling dropped since chunking
                pending.extendleft(reversed(list(self._chunks(base, endpoint, chunk, columns))))
                continue
            try:
                rows.extend(
                    await self._filtered(connection_id, division, base, chunk, columns, counted)
                )
            except PermanentError as exc:
                if exc.code != 400 or len(chunk) == 1:
                    raise
                if not counted:
                    # One key alone first: refused too, the request is wrong, not too large
                    # (a bad $select), and halving down to single keys would only add errors.
                    counted = True
                    first, chunk = chunk[:1], chunk[1:]
                    rows.extend(
                        await self._filtered(connection_id, division, base, first, columns, True)
                    )
                half = (len(chunk) + 1) // 2
                if half < self.max_terms(endpoint):
                    self._ceilings[endpoint] = half
                    log.warning(
                        "exact_filter_refused", endpoint=endpoint, terms=len(chunk), now=half
                    )
                pending.extendleft(reversed(list(self._chunks(base, endpoint, chunk, columns))))
        return rows

    async def _filtered(
        self,
        connection_id: str,
        division: int,
        base: str,
        terms: list[str],
        columns: str,
        counted: bool,
    ) -> list[Record]:
        params = {"$filter": " or ".join(terms), "$select": columns}
        return await self._pages(connection_id, division, base, params, count_errors=not counted)

    def _chunks(
        self, base: str, endpoint: str, terms: Sequence[str], columns: str
    ) -> Iterator[list[str]]:
        return _term_chunks(
            base,
            terms,
            columns,
            limit=self._max_url_length,
            max_terms=self.max_terms(endpoint),
        )

    async def get_sync(
        self, connection_id: str, division: int, path: str, after: int, select: list[str]
    ) -> list[Record]:
        """Every row of the sync API ``path`` (``sync/CRM/Accounts``) whose row version
        (``Timestamp``) is above ``after``, in row-version order (all pages)."""
        token = await self._tokens.get(connection_id)
        base = f"{token.base_url.rstrip('/')}/api/v1/{division}/{path}"
        params = {"$filter": f"Timestamp gt {after}", "$select": ",".join(select)}
        # a feed that is not there (404) is no empty feed: its table would call every key gone
        return await self._pages(connection_id, division, base, params, gone_ok=False)

    async def sync_start(
        self, connection_id: str, division: int, endpoint: str, modified: datetime
    ) -> int | None:
        """The row version of the first record of a sync API (``SalesInvoices``) modified on
        or after ``modified``, written in Exact's form (read/sync/Sync/SyncTimestamp)."""
        token = await self._tokens.get(connection_id)
        base = f"{token.base_url.rstrip('/')}/api/v1/{division}/read/sync/Sync/SyncTimestamp"
        params = {
            "modified": modified.strftime("datetime'%Y-%m-%dT%H:%M:%S'"),
            "endPoint": f"'{endpoint}'",
        }
        rows = await self._pages(connection_id, division, base, params)
        value = rows[0].get("TimeStampAsBigInt") if rows else None
        return int(value) if value is not None else None

    async def get_filtered(
        self, connection_id: str, division: int, resource: str, filter_: str, select: list[str]
    ) -> list[Record]:
        """Every record matching an OData ``$filter`` (all pages)."""
        token = await self._tokens.get(connection_id)
        base = f"{token.base_url.rstrip('/')}/api/v1/{division}/{resource}"
        params = {"$filter": filter_, "$select": ",".join(select)}
        return await self._pages(connection_id, division, base, params)

    async def _pages(
        self,
        connection_id: str,
        division: int,
        url: str,
        params: dict[str, str] | None,
        *,
        count_errors: bool = True,
        gone_ok: bool = True,
    ) -> list[Record]:
        rows: list[Record] = []
        next_url: str | None = url
        while next_url:
            body = await self._get(
                connection_id, division, next_url, params, count_errors=count_errors
            )
            if body is None and not gone_ok:
                raise PermanentError("Exact answered 404", code=404)
            if body is None:
                break
            data = body["d"]
            rows.extend(data.get("results", []))
            # Exact's paging is sequential only: __next carries every query option.
            next_url, params = data.get("__next"), None
        return rows

    async def _get(
        self,
        connection_id: str,
        division: int,
        url: str,
        params: dict[str, str] | None,
        *,
        count_errors: bool = True,
    ) -> Any:
        endpoint = endpoint_of(url)
        token = await self._tokens.get(connection_id)
        send = (connection_id, division, endpoint, url, params)
        response = await self._send(*send, token, count_errors=count_errors)
        if response.status_code == 401:
            token = await self._tokens.refresh(connection_id, token.fingerprint)
            response = await self._send(*send, token, count_errors=count_errors)
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
        *,
        count_errors: bool = True,
    ) -> httpx.Response:
        headers = {
            "Accept": "application/json",
            "Authorization": "Bearer " + token.access_token.get_secret_value(),
        }

        async def send() -> httpx.Response:
            return await self._client.get(url, params=params, headers=headers)

        try:
            return await self._governor.call(
                connection_id, division, endpoint, send, count_errors=count_errors
            )
        except httpx.TransportError as exc:
            raise TransientError(f"Exact unreachable: {type(exc).__name__}") from exc
