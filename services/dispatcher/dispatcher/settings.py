"""dispatcher settings."""

from __future__ import annotations

from common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    http_port: int = 8082
    #: Twilio call timeouts (seconds). A read timeout after the POST left is ambiguous.
    dispatcher_connect_timeout: float = 5.0
    dispatcher_read_timeout: float = 20.0
    #: A claim still ``sending`` after this long belongs to a sender that died mid-call: the
    #: send may have happened, so the claim becomes ambiguous instead of being sent again.
    dispatcher_claim_stale_seconds: float = 120.0
    #: How long a connection's Twilio account choice is cached (set-channels takes effect
    #: within this time).
    dispatcher_credentials_cache_seconds: float = 60.0
