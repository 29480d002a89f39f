"""The dispatcher's own series, beside the standard consumer ones."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DispatchMetrics"]


@dataclass(frozen=True)
class DispatchMetrics:
    #: Events published from the outbox (at-least-once: a re-published batch counts again).
    relayed: Counter
    #: Events committed but not yet confirmed by the broker; alert while it stays above zero.
    pending: Gauge
    #: Unsettled claims the resolver settled, by outcome (sent, resent, lookup_failed...).
    resolutions: Counter
    #: Provider send requests by channel and outcome (sent, transient, permanent, ambiguous).
    provider_seconds: Histogram
    #: Sends refused for the account's credentials (Twilio 401/20003, SendGrid 401/403).
    credentials_refused: Counter
    #: How long a send waited for its account's request slot and rate (``Pacer``).
    pacing_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> DispatchMetrics:
        return cls(
            Counter(
                "mlc_dispatch_outbox_relayed_total",
                "Outcome events published from the dispatcher's outbox",
                registry=registry,
            ),
            Gauge(
                "mlc_dispatch_outbox_pending",
                "Outcome events committed but not yet published",
                registry=registry,
            ),
            Counter(
                "mlc_dispatch_resolutions_total",
                "Unsettled claims looked up at Twilio, by outcome",
                ["outcome"],
                registry=registry,
            ),
            Histogram(
                "mlc_provider_request_seconds",
                "Time of each send request to Twilio or SendGrid, by channel and outcome",
                ["channel", "outcome"],
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20),
                registry=registry,
            ),
            Counter(
                "mlc_provider_credentials_refused_total",
                "Sends refused because the provider refused the account's credentials",
                ["channel"],
                registry=registry,
            ),
            Histogram(
                "mlc_dispatch_pacing_wait_seconds",
                "Time a provider request waited for its account's concurrency and rate limit",
                ["provider"],
                buckets=(0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
                registry=registry,
            ),
        )
