"""Prometheus series of the simulator, on a registry the app creates (never the global one).

- ``mlc_sim_twilio_requests_total{route,method,status}``: requests answered, by route
  template (``/2010-04-01/Accounts/{AccountSid}/Messages.json``), never by concrete path.
- ``mlc_sim_twilio_callback_attempts_total{resource,outcome}``: status callback POSTs, by
  ``message``/``call`` and ``ok``/``http_error``/``connection_error``.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

__all__ = ["Metrics", "metrics_view"]


@dataclass(frozen=True)
class Metrics:
    """The simulator's series, bound to one registry."""

    registry: CollectorRegistry
    requests: Counter
    callback_attempts: Counter

    @classmethod
    def create(cls) -> Metrics:
        """A fresh registry with every series registered."""
        registry = CollectorRegistry(auto_describe=True)
        return cls(
            registry=registry,
            requests=Counter(
                "mlc_sim_twilio_requests_total",
                "Requests answered by the Twilio simulator.",
                ["route", "method", "status"],
                registry=registry,
            ),
            callback_attempts=Counter(
                "mlc_sim_twilio_callback_attempts_total",
                "Status callback deliveries attempted by the Twilio simulator.",
                ["resource", "outcome"],
                registry=registry,
            ),
        )


def metrics_view(metrics: Metrics) -> web.Response:
    """The Prometheus text exposition of ``metrics``."""
    return web.Response(
        body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )
