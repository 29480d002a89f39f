"""token-keeper settings: the shared contract plus the token rotation policy."""

from __future__ import annotations

from common.settings import ServiceSettings
from token_keeper.handlers import TokenPolicy

__all__ = ["Settings"]


class Settings(ServiceSettings):
    http_port: int = 8084
    #: Refresh when fewer seconds than this remain on the 600 s access token. Exact refuses a
    #: refresh sooner than ~570 s after the last one, so the margin must stay under 30 s.
    token_keeper_refresh_margin: int = 25
    #: Never ask Exact for a refresh sooner than this after the last one.
    token_keeper_min_refresh_interval: int = 575
    #: Refresh idle connections after this long (refresh tokens die after 30 days unused).
    token_keeper_keepalive_after_seconds: int = 7 * 24 * 3600
    #: How often the keep-alive and the connection metrics run.
    token_keeper_housekeeping_seconds: float = 60.0

    def policy(self) -> TokenPolicy:
        return TokenPolicy(
            margin=self.token_keeper_refresh_margin,
            min_interval=self.token_keeper_min_refresh_interval,
            keepalive_after=self.token_keeper_keepalive_after_seconds,
        )
