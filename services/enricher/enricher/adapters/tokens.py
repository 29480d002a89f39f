"""RpcTokenSource: access tokens from token-keeper, cached until shortly before expiry;
RpcConnections: the connections (and their divisions) token-keeper has working."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from common.contracts import AccessToken, Connections, ConnectionsList, TokenGet, TokenRefresh
from common.rpc import RpcClient

__all__ = ["RpcConnections", "RpcTokenSource"]

#: Stop using a cached token this long before it expires (token-keeper refreshes at ~25 s).
_EARLY = timedelta(seconds=20)


class RpcTokenSource:
    def __init__(self, rpc: RpcClient) -> None:
        self._rpc = rpc
        self._cache: dict[str, AccessToken] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, connection_id: str) -> AccessToken:
        async with self._locks.setdefault(connection_id, asyncio.Lock()):
            token = self._cache.get(connection_id)
            if token is None or token.expires_at - datetime.now(UTC) < _EARLY:
                token = await self._rpc.call(TokenGet(connection_id=connection_id), AccessToken)
                self._cache[connection_id] = token
            return token

    async def refresh(self, connection_id: str, fingerprint: str) -> AccessToken:
        """Exact refused the token ``fingerprint``: ask for a refresh (token-keeper dedupes)."""
        async with self._locks.setdefault(connection_id, asyncio.Lock()):
            cached = self._cache.get(connection_id)
            if cached is not None and cached.fingerprint != fingerprint:
                return cached  # another task already got a newer one
            token = await self._rpc.call(
                TokenRefresh(connection_id=connection_id, fingerprint=fingerprint), AccessToken
            )
            self._cache[connection_id] = token
            return token


class RpcConnections:
    """Implements ``reconcile.ConnectionSource`` over token-keeper's ``connections.list``."""

    def __init__(self, rpc: RpcClient) -> None:
        self._rpc = rpc

    async def active(self) -> list[tuple[str, list[int]]]:
        reply = await self._rpc.call(ConnectionsList(), Connections)
        return [(c.connection_id, list(c.divisions)) for c in reply.connections]
