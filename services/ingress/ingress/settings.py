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
    #: How long an unknown connection id is remembered as unknown (no lookup per flood request).
    ingress_unknown_cache_seconds: float = 30.0
    #: A webhook body seen within this window is acknowledged but not published again.
    ingress_replay_window_seconds: float = 24 * 3600
    #: An Exact event older than this (by EventCreatedOn, read as UTC) is acknowledged, not
    #: published: reconciliation covers what is that late. Generous, since Exact's time zone
    #: for the field is unconfirmed.
    ingress_max_event_age_seconds: float = 3 * 24 * 3600
