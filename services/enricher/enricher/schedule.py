"""The scheduler: fires the notices that are due (reminders, messages held for quiet hours).

Every ``interval`` seconds one pass takes up to ``batch`` due notices, locked, lets the
``Decider`` settle each, publishes what it decided (confirmed by the broker), then commits.
A crash between publish and commit fires the same notices again on the next pass, with the
same idempotency keys: the dispatcher's claims make that one send each.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import structlog

from common.contracts import Message
from enricher.adapters.notices import PostgresNotices
from enricher.decisions import Decider
from enricher.reminders import fire_due

__all__ = ["Scheduler"]

log = structlog.get_logger("enricher")


class Publish(Protocol):
    async def __call__(self, message: Message) -> None: ...


@dataclass
class Scheduler:
    decider: Decider
    notices: PostgresNotices
    publish: Publish
    batch: int = 50

    async def run_once(self) -> int:
        """One pass; returns the number of messages published."""
        async with self.notices.due(self.decider.clock(), limit=self.batch) as due:
            if not due.notices:
                return 0
            fired = await fire_due(self.decider, due)
            for _notice, message in fired:
                await self.publish(message)
        if fired:
            log.info("notices_fired", n=len(fired))
        return len(fired)

    async def run(self, interval: float) -> None:
        while True:
            try:
                while await self.run_once() >= self.batch:
                    pass  # more are due: go on without waiting
            except Exception:
                # the pass rolled back: its notices stay pending and the next pass retries them
                log.exception("schedule_pass_failed")
            await asyncio.sleep(interval)
