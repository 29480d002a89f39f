"""Prometheus series of the simulator, on a registry made by the app factory.

Labels come from fixed sets: the endpoint is an entity path (``crm/Accounts``), ``current/Me``,
``oauth2/token``, ``oauth2/auth`` or ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

__all__ = ["SimMetrics"]


@dataclass(frozen=True)
class SimMetrics:
    api_calls: Counter
    rate_limited: Counter
    token_requests: Counter
    webhook_deliveries: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> SimMetrics:
        return cls(
            Counter(
                "mlc_sim_exact_api_calls_total",
                "API calls answered, by endpoint and status",
                ["endpoint", "status"],
                registry=registry,
            ),
            Counter(
                "mlc_sim_exact_rate_limited_total",
                "Calls refused with 429, by limit",
                ["limit"],
                registry=registry,
            ),
            Counter(
                "mlc_sim_exact_token_requests_total",
                "Token endpoint requests, by outcome",
                ["grant_type", "outcome"],
                registry=registry,
            ),
            Counter(
                "mlc_sim_exact_webhook_deliveries_total",
                "Webhook deliveries, by outcome",
                ["topic", "outcome"],
                registry=registry,
            ),
        )
