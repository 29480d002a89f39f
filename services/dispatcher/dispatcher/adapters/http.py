"""The dispatcher's HTTP client: aiohttp's, with answers read whole and failures classed.

The send path makes one provider request per notification, so the client's own cost is paid
on every send. aiohttp's client costs about a tenth of httpx's per request at the
dispatcher's concurrency (BENCHMARKS.md), so the dispatcher uses it through this small
interface; the rest of the project keeps httpx where requests are few.

What matters about a failed request is whether the provider could have acted on it
(``transport.post_once``): ``NotSent`` when it never left whole (refused or timed-out
connect, including the wait for a pooled connection), ``TransportFailure`` otherwise.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from multidict import CIMultiDictProxy

__all__ = ["HttpClient", "NotSent", "Reply", "TransportFailure", "basic_auth"]


class TransportFailure(Exception):
    """The request failed in transit; it may have reached the provider."""


class NotSent(TransportFailure):
    """The request never left whole: no connection was made or handed out in time."""


def basic_auth(user: str, password: str) -> str:
    """An ``Authorization`` header value for HTTP Basic authentication."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class Reply:
    """An HTTP answer, its body read whole."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: CIMultiDictProxy[str], content: bytes) -> None:
        self.status_code = status_code
        #: Case-insensitive, as HTTP header names are.
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class HttpClient:
    """Requests to one provider's base URL over a pool of kept-alive connections."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 20.0,
        max_connections: int = 100,
    ) -> None:
        self._base = base_url.rstrip("/")
        # connect: the wait for a pooled connection and the TCP/TLS handshake; sock_read: the
        # longest silence while the answer is awaited or read
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections),
            timeout=self._timeout,
            # the providers' own answers are read; no cookies, no proxies from the environment
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self,
        path: str,
        *,
        content: str | bytes | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return await self._request("POST", path, data=content, json=json, headers=headers)

    async def get(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        return await self._request("GET", path, params=params, headers=headers)

    async def _request(self, method: str, path: str, **kwargs: Any) -> Reply:
        if self._session is None:
            raise RuntimeError("HttpClient used outside its 'async with'")
        # a path from the provider (a next-page URI) is joined to the base like any other
        url = path if path.startswith(("http://", "https://")) else self._base + path
        try:
            async with self._session.request(method, url, **kwargs) as response:
                content = await response.read()
                return Reply(response.status, response.headers, content)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise NotSent(type(exc).__name__) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportFailure(type(exc).__name__) from exc
