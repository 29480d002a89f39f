"""token-keeper settings: the shared contract plus how early to refresh."""

from __future__ import annotations

from common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    http_port: int = 8084
    #: Refresh when fewer seconds than this remain on the 600 s access token. Exact refuses a
    #: refresh sooner than ~570 s after the last one, so the margin must stay under 30 s.
    token_keeper_refresh_margin: int = 25
