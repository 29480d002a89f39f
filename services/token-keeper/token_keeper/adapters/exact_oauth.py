"""ExactTokenEndpoint: Exact's OAuth2 refresh call, its answers mapped to our errors.

Exact's answers (reference exact-online.md §2.7): 400 ``access_denied`` with a
``TooEarlyToRefreshTokens`` reason (older form: 401 "Access Token not expired") means wait;
401 ``unauthorized_client`` "Old refresh token used" and 400 ``invalid_request`` "refresh token
expired" mean the chain is broken and only a new consent repairs it.
"""

from __future__ import annotations

import httpx

from common.errors import PermanentError, TransientError
from token_keeper.ports import Connection, TokenPair

__all__ = ["ChainBroken", "ExactTokenEndpoint"]


class ChainBroken(PermanentError):
    """The refresh token no longer works: the connection needs a new consent."""

    error_class = "needs_reconnect"


class ExactTokenEndpoint:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def refresh(self, connection: Connection) -> TokenPair:
        try:
            # No Authorization header: Exact answers 401 to a token request that carries one.
            response = await self._client.post(
                connection.base_url.rstrip("/") + "/api/oauth2/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": connection.refresh_token,
                    "client_id": connection.client_id,
                    "client_secret": connection.client_secret,
                },
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            # Whether a lost answer rotated the token cannot be known here; the next call tells.
            raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from exc
        if response.status_code == 200:
            body = response.json()
            return TokenPair(
                body["access_token"], body["refresh_token"], int(body.get("expires_in", 600))
            )
        text = response.text[:300]
        reason = response.headers.get("Reason", "")
        if "TooEarly" in reason or "not expired" in text:
            raise TransientError("refresh refused as too early", code="too_early", retry_after=30)
        if response.status_code in (400, 401):
            raise ChainBroken(
                f"refresh refused ({response.status_code}): {text}", code="needs_reconnect"
            )
        raise TransientError(
            f"token endpoint answered {response.status_code}", code=response.status_code
        )
