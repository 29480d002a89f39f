"""Everything one simulator instance holds, built by ``app.create_app`` and kept in the app.

Handlers reach it through ``request.app[SIMULATOR]``; nothing lives in module globals, so a test
can run several simulators in one process.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from sim_exact.calls import CallLog
from sim_exact.clock import Clock
from sim_exact.documents import Documents
from sim_exact.faults import Faults
from sim_exact.metrics import SimMetrics
from sim_exact.oauth import OAuth
from sim_exact.ratelimit import ErrorTracker, RateLimiter
from sim_exact.seed import Seed
from sim_exact.settings import Settings
from sim_exact.store import Store
from sim_exact.webhooks import Webhooks

__all__ = ["SIMULATOR", "Simulator"]


@dataclass
class Simulator:
    settings: Settings
    clock: Clock
    store: Store
    documents: Documents
    seed: Seed
    oauth: OAuth
    limiter: RateLimiter
    errors: ErrorTracker
    faults: Faults
    calls: CallLog
    webhooks: Webhooks
    registry: CollectorRegistry
    metrics: SimMetrics


SIMULATOR = web.AppKey("simulator", Simulator)
