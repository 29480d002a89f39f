"""Webhook secrets per connection, asked of token-keeper (which keeps them sealed) and cached."""

from __future__ import annotations

import time

from common.contracts import WebhookSecret, WebhookSecretGet
from common.rpc import RpcClient

__all__ = ["WebhookSecrets"]


class WebhookSecrets:
    def __init__(self, rpc: RpcClient, *, ttl: float) -> None:
        self._rpc = rpc
        self._ttl = ttl
        self._cache: dict[str, tuple[float, WebhookSecret]] = {}

    async def get(self, connection_id: str) -> WebhookSecret:
        """The connection's secret. Raises PermanentError (unknown) or TransientError."""
        hit = self._cache.get(connection_id)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        secret = await self._rpc.call(WebhookSecretGet(connection_id=connection_id), WebhookSecret)
        self._cache[connection_id] = (time.monotonic() + self._ttl, secret)
        return secret
