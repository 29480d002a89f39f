"""Applying the retention period (``MLC_AUDITOR_RETENTION_DAYS``) every day.

A trail kept forever is personal data kept forever: notifications (their attempts and
statuses) and inbound messages older than the period are deleted by the same purge as
``mlc audit purge``, and each run is recorded in ``audit.privacy_log`` (requested by
``retention``), so that the record shows the policy was applied, not only configured.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any, Protocol

import structlog

__all__ = ["REQUESTED_BY", "purge_forever"]

log = structlog.get_logger("auditor.retention")

#: Who the privacy log names for the daily runs.
REQUESTED_BY = "retention"


class Purger(Protocol):
    async def purge(
        self, *, older_than: timedelta, requested_by: str, dry_run: bool = False
    ) -> dict[str, Any]: ...


async def purge_forever(trail: Purger, stop: asyncio.Event, *, days: int, interval: float) -> None:
    """Purge what is older than ``days`` now and then every ``interval`` seconds, until
    ``stop``. A failed run is logged and the loop goes on (the next run deletes what this one
    left: the cut-off only moves forward)."""
    while not stop.is_set():
        try:
            done = await trail.purge(older_than=timedelta(days=days), requested_by=REQUESTED_BY)
            log.info("retention_applied", days=days, **done["counts"])
        except Exception as exc:  # the loop must outlive a database outage
            log.warning("retention_failed", error=type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
