"""ExactClient: reads records from the Exact Online REST API (OData v3 over JSON).

Error mapping at this boundary: 401 -> one token refresh and replay, then PermanentError;
404 -> the record is gone (None); 429 -> TransientError until the minutely reset; 5xx and
network errors -> TransientError (reads are safe to repeat); other 4xx -> PermanentError.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Generator
from typing import Any
from uuid import UUID

import httpx

from common.errors import PermanentError, TransientError
from enricher.adapters.tokens import RpcTokenSource
from enricher.ports import Record

__all__ = ["ExactAuth", "ExactClient"]


class ExactAuth(httpx.Auth):
    """Bearer auth fed by token-keeper; a 401 asks for a refresh and replays the request once."""

    def __init__(self, tokens: RpcTokenSource, connection_id: str) -> None:
        self._tokens = tokens
        self._connection_id = connection_id

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("ExactAuth is async only")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._tokens.get(self._connection_id)
        request.headers["Authorization"] = "Bearer " + token.access_token.get_secret_value()
        response = yield request
        if response.status_code == 401:
            token = await self._tokens.refresh(self._connection_id, token.fingerprint)
            request.headers["Authorization"] = "Bearer " + token.access_token.get_secret_value()
            yield request


def _retry_after(response: httpx.Response) -> float:
    """Seconds until Exact's minutely window resets (epoch-ms header), or a minute."""
    reset = response.headers.get("X-RateLimit-Minutely-Reset")
    if reset and reset.isdigit():
        return max(1.0, int(reset) / 1000 - time.time() + 1)
    return 60.0


class ExactClient:
    def __init__(self, client: httpx.AsyncClient, tokens: RpcTokenSource) -> None:
        self._client = client
        self._tokens = tokens

    async def _get(self, connection_id: str, url: str, params: dict[str, str] | None) -> Any:
        token = await self._tokens.get(connection_id)
        if not url.startswith("http"):
            url = token.base_url.rstrip("/") + url
        try:
            response = await self._client.get(
                url,
                params=params,
                headers={"Accept": "application/json"},
                auth=ExactAuth(self._tokens, connection_id),
            )
        except httpx.TransportError as exc:
            raise TransientError(f"Exact unreachable: {type(exc).__name__}") from exc
        status = response.status_code
        if status == 404:
            return None
        if status == 429:
            raise TransientError("Exact rate limit", code=429, retry_after=_retry_after(response))
        if status >= 500:
            raise TransientError(f"Exact answered {status}", code=status)
        if status >= 400:
            raise PermanentError(f"Exact answered {status}: {response.text[:200]}", code=status)
        if "json" not in response.headers.get("Content-Type", ""):
            # Exact sometimes serves a maintenance page with 200.
            raise TransientError("Exact answered 200 without JSON", code="not_json")
        return response.json()

    async def get_one(
        self,
        connection_id: str,
        division: int,
        resource: str,
        key_field: str,
        key: UUID,
        select: list[str],
    ) -> Record | None:
        rows = await self.get_many(
            connection_id, division, resource, f"{key_field} eq guid'{key}'", select
        )
        return rows[0] if rows else None

    async def get_many(
        self, connection_id: str, division: int, resource: str, filter_: str, select: list[str]
    ) -> list[Record]:
        url: str | None = f"/api/v1/{division}/{resource}"
        params: dict[str, str] | None = {"$filter": filter_, "$select": ",".join(select)}
        rows: list[Record] = []
        while url:
            body = await self._get(connection_id, url, params)
            if body is None:
                break
            data = body["d"]
            rows.extend(data.get("results", []))
            url, params = data.get("__next"), None  # __next carries every query option
        return rows
