"""Prometheus helpers: an explicit registry per process and the standard consumer series.

Names follow ``mlc_<subsystem>_<thing>_<unit>``; labels come from small fixed sets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

__all__ = ["ConsumerMetrics", "make_registry", "metrics_view"]


def make_registry() -> CollectorRegistry:
    """A fresh registry (never the global one), so tests can build their own."""
    return CollectorRegistry(auto_describe=True)


@dataclass(frozen=True)
class ConsumerMetrics:
    """``mlc_consumer_messages_total{queue,outcome}`` and ``mlc_consumer_handle_seconds{queue}``."""

    messages: Counter
    handle_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ConsumerMetrics:
        return cls(
            Counter(
                "mlc_consumer_messages_total",
                "Deliveries settled, by outcome",
                ["queue", "outcome"],
                registry=registry,
            ),
            Histogram(
                "mlc_consumer_handle_seconds",
                "Time to handle and settle a delivery",
                ["queue"],
                registry=registry,
            ),
        )


def metrics_view(
    registry: CollectorRegistry,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp view serving ``registry`` in the Prometheus text format."""

    async def view(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    return view
