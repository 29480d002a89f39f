"""An Exact simulator's access token for tests that drive the enricher's Exact client without
token-keeper: one real refresh-token grant, then a TokenSource that hands it out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from pydantic import SecretStr

from common.contracts import AccessToken
from sim_exact.settings import Settings


async def sim_access_token(url: str, settings: Settings) -> AccessToken:
    """The simulator at ``url`` grants a token for its own default credentials."""
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post(
            "/api/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": settings.exact_refresh_token.get_secret_value(),
                "client_id": settings.exact_client_id,
                "client_secret": settings.exact_client_secret.get_secret_value(),
            },
        )
        answer.raise_for_status()
    return AccessToken(
        connection_id="default",
        access_token=SecretStr(answer.json()["access_token"]),
        fingerprint="f1",
        expires_at=datetime.now(UTC) + timedelta(minutes=10),
        base_url=url,
        division=settings.exact_division,
    )


@dataclass
class SimTokens:
    """A TokenSource holding one access token of the simulator; counts refresh requests."""

    token: AccessToken
    refreshed: list[str] = field(default_factory=list)

    async def get(self, connection_id: str) -> AccessToken:
        return self.token

    async def refresh(self, connection_id: str, fingerprint: str) -> AccessToken:
        self.refreshed.append(fingerprint)
        return self.token
