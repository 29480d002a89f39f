"""ingress settings."""

from __future__ import annotations

from common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    http_port: int = 8080
    #: Largest webhook body accepted (Exact's are under 1 KiB, Twilio's a few KiB).
    ingress_max_body_bytes: int = 256 * 1024
    #: How long a connection's webhook secret is cached after token-keeper gave it.
    ingress_secret_cache_seconds: float = 60.0
