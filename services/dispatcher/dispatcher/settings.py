"""dispatcher settings."""

from __future__ import annotations

from pydantic import Field, model_validator

from common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    http_port: int = 8082
    #: Twilio call timeouts (seconds). A read timeout after the POST left is ambiguous.
    dispatcher_connect_timeout: float = 5.0
    dispatcher_read_timeout: float = 20.0
    #: A claim still ``sending`` after this long belongs to a sender that died (before or
    #: during the call): the resolver asks Twilio whether the message exists, and sends it
    #: again only when it does not.
    dispatcher_claim_stale_seconds: float = 120.0
    #: An ``ambiguous`` claim (no answer after the request left) is looked up this long after
    #: the timeout, so that Twilio lists what it accepted.
    dispatcher_resolve_after_seconds: float = 120.0
    #: How often the resolver looks for claims due for a lookup.
    dispatcher_resolve_interval_seconds: float = 15.0
    #: Sends per notification (over all copies of its command) before it fails ``exhausted``.
    dispatcher_max_attempts: int = 5
    #: The outbox relay publishes at once after a commit, and polls this often besides.
    dispatcher_outbox_poll_seconds: float = 1.0
    #: How long a connection's Twilio account choice is cached (set-channels takes effect
    #: within this time).
    dispatcher_credentials_cache_seconds: float = 60.0

    def needed_credentials(self) -> tuple[str, ...]:
        """The install's own Twilio and SendGrid accounts (REST with an API key when one is
        configured, else with the auth token) and whom calls and email come from."""
        twilio_rest = (
            ("twilio_api_key_secret",) if self.twilio_api_key_sid else ("twilio_auth_token",)
        )
        return (
            "twilio_account_sid",
            *twilio_rest,
            "twilio_messaging_service_sid",
            "twilio_voice_from",
            "sendgrid_api_key",
            "email_from",
        )

    #: An email whose send had no answer and of which no SendGrid event arrived within this
    #: time is taken as never received, and sent again (SendGrid has no lookup API).
    dispatcher_email_resolve_seconds: float = 600.0
    #: Days a settled claim keeps its command (the recipient and the text): long enough for an
    #: operator to release and retry a failed one; the claim itself stays for good.
    dispatcher_command_retention_days: float = 30.0
    #: Messages of dispatcher.sends handled at once. Their claims are written together, then
    #: each send waits for its account's request slot: a window much wider than the provider
    #: concurrency keeps every slot busy and the claims in large groups. A send that finds no
    #: slot within ``pacing_max_wait`` is released and retried, never sent on an old claim.
    dispatcher_prefetch: int = 1000
    #: Most claims or settles of concurrent deliveries written in one transaction (1: one
    #: each); each send still starts only after its own claim committed.
    dispatcher_group_commit_max: int = 100
    #: Requests in flight at most per Twilio account (Twilio answers 20429 above an account's
    #: REST concurrency limit) and per SendGrid key.
    dispatcher_twilio_concurrency: int = Field(default=50, ge=1)
    dispatcher_sendgrid_concurrency: int = Field(default=50, ge=1)
    #: Requests a second at most per Twilio account / SendGrid key, with bursts of the
    #: ``_burst`` size (0: no rate, only the concurrency). A paced send waits after its claim,
    #: so dispatcher_prefetch / rate must stay below ``pacing_max_wait``.
    dispatcher_twilio_rate: float = Field(default=0.0, ge=0)
    dispatcher_twilio_burst: int = Field(default=10, ge=1)
    dispatcher_sendgrid_rate: float = Field(default=0.0, ge=0)
    dispatcher_sendgrid_burst: int = Field(default=10, ge=1)
    db_pool_max: int = 8

    @property
    def pacing_max_wait(self) -> float:
        """Longest wait for a provider request slot after the claim: a send that starts by
        then ends (its timeouts) by half the stale time, well before the resolver may take
        its claim for a dead sender's."""
        return (
            self.dispatcher_claim_stale_seconds / 2
            - self.dispatcher_connect_timeout
            - self.dispatcher_read_timeout
        )

    @model_validator(mode="after")
    def _pacing_within_claims(self) -> Settings:
        """A paced send waits after its claim: it must have time to wait and be made well
        before its claim is taken for stale, and a full prefetch window at the rate must
        drain in that time."""
        if self.pacing_max_wait <= 0:
            raise ValueError(
                "MLC_DISPATCHER_CLAIM_STALE_SECONDS must be over twice the Twilio connect and "
                "read timeouts together, so that a send ends well before its claim is stale"
            )
        for provider in ("twilio", "sendgrid"):
            rate = float(getattr(self, f"dispatcher_{provider}_rate"))
            longest = self.dispatcher_prefetch / rate if rate else 0.0
            if longest > self.pacing_max_wait:
                raise ValueError(
                    f"MLC_DISPATCHER_{provider.upper()}_RATE={rate:g} lets a send wait up to "
                    f"{longest:.0f} s after its claim, over the {self.pacing_max_wait:g} s "
                    "allowed (half of MLC_DISPATCHER_CLAIM_STALE_SECONDS less the timeouts): "
                    "raise the rate, lower MLC_DISPATCHER_PREFETCH or raise the stale time"
                )
        return self
