"""ingress settings."""

from __future__ import annotations

from pydantic import Field, field_validator

from common.settings import ServiceSettings
from ingress.ratelimit import parse_networks

__all__ = ["Settings"]


class Settings(ServiceSettings):
    http_port: int = 8080

    def needed_credentials(self) -> tuple[str, ...]:
        """What checks the install's own Twilio callbacks and SendGrid events (Exact's
        webhook secrets come from token-keeper, per connection)."""
        return ("twilio_account_sid", "twilio_auth_token", "sendgrid_webhook_public_key")

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
    #: Webhook requests per second one source address may sustain (MLC_INGRESS_RATE_LIMIT_PER_
    #: SECOND), and how many it may send at once above that (..._BURST). Generous on purpose:
    #: Exact, Twilio and SendGrid post from a handful of addresses, and a monthly invoicing run
    #: makes them post together (1,000 Exact webhooks arrive within 2 s in ``make bench``, then
    #: three or four Twilio callbacks per SMS at the account's sending rate). Whether Exact
    #: retries a refused webhook is not documented (reconciliation would catch it up, later),
    #: so the limit only has to stop one source flooding the secret lookups, never shape a
    #: vendor's normal traffic: 1,000/s with a burst of 10,000 (a 10,000-invoice run at once)
    #: is above any of them and far below what a flood needs to hurt.
    ingress_rate_limit_per_second: float = Field(default=1000.0, gt=0)
    ingress_rate_limit_burst: int = Field(default=10_000, ge=1)
    #: Most source addresses tracked at once (a few hundred bytes each). An idle source's
    #: bucket (refilled to the full burst) is dropped first; past this many, the least recently
    #: seen is, so a flood from ever new addresses cannot grow memory without limit.
    ingress_rate_limit_sources: int = Field(default=50_000, ge=1)
    #: Peers whose X-Forwarded-For is believed (MLC_INGRESS_TRUSTED_PROXIES): comma-separated
    #: addresses or networks (``10.0.0.0/8,192.0.2.7``) of the reverse proxies in front of
    #: ingress. Empty: the header is ignored and the peer address is the source, since anyone
    #: can write that header.
    ingress_trusted_proxies: str = ""

    @field_validator("ingress_trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        """Fail at start-up, not on the first request, when a proxy address is mistyped."""
        parse_networks(value)
        return value
