"""Periodic work of token-keeper: keep idle connections alive and publish connection metrics.

Every replica runs it; the refresh lock makes the keep-alive happen once per connection.
Gauges (bounded by the number of configured connections):
``mlc_token_age_seconds{connection}`` time since the last refresh and
``mlc_token_connections{status}`` how many connections are active or need a new consent.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from prometheus_client import CollectorRegistry, Gauge

from common.errors import MlcError
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.handlers import Clock, TokenPolicy, keep_alive
from token_keeper.ports import TokenEndpoint

__all__ = ["Housekeeping"]

log = structlog.get_logger("token-keeper")


@dataclass
class Housekeeping:
    store: PostgresConnectionStore
    endpoint: TokenEndpoint
    policy: TokenPolicy
    clock: Clock
    registry: CollectorRegistry

    def __post_init__(self) -> None:
        self._age = Gauge(
            "mlc_token_age_seconds",
            "Seconds since the connection's last refresh",
            ["connection"],
            registry=self.registry,
        )
        self._connections = Gauge(
            "mlc_token_connections", "Connections by status", ["status"], registry=self.registry
        )

    async def run_once(self) -> None:
        summaries = await self.store.summaries()
        counts = {"active": 0, "needs_reconnect": 0}
        for summary in summaries:
            counts[summary.status] = counts.get(summary.status, 0) + 1
            try:
                await keep_alive(
                    summary.id,
                    store=self.store,
                    endpoint=self.endpoint,
                    policy=self.policy,
                    clock=self.clock,
                )
            except MlcError as exc:  # one connection's trouble must not stop the others
                log.warning(
                    "keepalive_failed", connection_id=summary.id, error_class=exc.error_class
                )
        for summary in await self.store.summaries():
            if summary.refreshed_at is not None:
                age = (self.clock() - summary.refreshed_at).total_seconds()
                self._age.labels(connection=summary.id).set(age)
        for status, count in counts.items():
            self._connections.labels(status=status).set(count)
        if counts["needs_reconnect"]:
            log.error("connections_need_reconnect", count=counts["needs_reconnect"])

    async def run(self, interval: float) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(interval)
