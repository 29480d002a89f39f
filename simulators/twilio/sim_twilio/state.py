"""The simulator's in-memory state: resources it created, requests it received, active faults,
and the background tasks that move resources through their statuses.

One :class:`SimState` lives in the app (``app[STATE]``); nothing here is module-global.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sim_twilio.faults import FaultBook

__all__ = ["Delivery", "Record", "RecordedRequest", "SimState", "utcnow"]

_log = logging.getLogger(__name__)


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


@dataclass
class RecordedRequest:
    """One request as received; ``status`` stays ``None`` while the response is held back."""

    id: int
    method: str
    path: str
    query: list[list[str]]
    form: list[list[str]] | None
    json: Any
    content_type: str
    received_at: str
    status: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The admin API's view."""
        return dict(self.__dict__)


@dataclass
class Delivery:
    """One status callback and every attempt to deliver it."""

    status: str
    url: str
    params: list[tuple[str, str]]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    delivered: bool = False

    def as_json(self) -> dict[str, Any]:
        """The admin API's view (params as pairs, attempts with their HTTP status)."""
        return {
            "status": self.status,
            "url": self.url,
            "params": [list(p) for p in self.params],
            "attempts": list(self.attempts),
            "delivered": self.delivered,
        }


@dataclass
class Record:
    """A created message or call: its API resource plus what the simulator knows about it."""

    resource: dict[str, Any]
    status_callback: str | None = None
    extra_params: list[list[str]] = field(default_factory=list)
    faults: list[int] = field(default_factory=list)
    callbacks: list[Delivery] = field(default_factory=list)
    created_at: datetime = field(default_factory=utcnow)

    def as_json(self) -> dict[str, Any]:
        """The resource, then the simulator's extras under their own keys."""
        return {
            **self.resource,
            "status_callback": self.status_callback,
            "extra_params": self.extra_params,
            "faults_applied": self.faults,
            "callbacks": [d.as_json() for d in self.callbacks],
        }


class SimState:
    """Everything the simulator remembers between requests."""

    def __init__(self) -> None:
        self.messages: dict[str, Record] = {}
        self.calls: dict[str, Record] = {}
        self.emails: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self.faults = FaultBook()
        #: Numbers that texted a STOP keyword (Twilio's default opt-out handling).
        self.opted_out: set[str] = set()
        self._tasks: set[asyncio.Task[object]] = set()
        #: Set at shutdown so that responses held back by a ``timeout`` fault are released.
        self.released = asyncio.Event()

    def spawn(self, coro: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        """Run ``coro`` in the background, tracked so reset and shutdown can cancel it."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("background_task_failed", exc_info=task.exception())

    async def hold(self, seconds: float) -> None:
        """Wait ``seconds`` before answering, or less if the simulator shuts down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.released.wait(), seconds)

    async def cancel_tasks(self) -> None:
        """Cancel every background task and wait for them to finish."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reset(self) -> None:
        """Back to a fresh simulator: no tasks, resources, records or faults."""
        await self.cancel_tasks()
        self.messages.clear()
        self.calls.clear()
        self.emails.clear()
        self.requests.clear()
        self.faults.clear()
        self.opted_out.clear()

    def record_request(self, **fields: Any) -> RecordedRequest:
        """Append a received request and return its record."""
        record = RecordedRequest(id=len(self.requests) + 1, **fields)
        self.requests.append(record)
        return record
