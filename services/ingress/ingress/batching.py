"""StatusBatcher: status callbacks that arrive together go to the broker as one message.

Twilio posts two or more status callbacks per message (sent, delivered; a call's several), so
under load they are most of what ingress receives, and each used to be a message of its own
through the broker and the auditor. ``publish`` queues a callback; one runner publishes what
is queued, one message per status (its routing key), and answers every caller once the
broker confirmed the message holding its callback. Callbacks queued while a publish waits
for its confirm form the next messages, so batches grow with the load and a lone callback
waits for nobody: it goes out as the plain ``TwilioStatus`` it always was.

The guarantee of one publish per callback is kept: ``publish`` returns only after the
broker confirmed (routed, persisted) the message that holds the callback, and raises when it
did not, so the sender is answered 200 only for a callback that is queued.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import structlog

from common.amqp import Publisher
from common.contracts import Message, TwilioStatus, TwilioStatuses

__all__ = ["StatusBatcher"]

log = structlog.get_logger("ingress.batching")

_Pending = list[tuple[TwilioStatus, asyncio.Future[None]]]


class StatusBatcher:
    """Publishes status callbacks, those queued together as one message per status."""

    def __init__(self, publisher: Publisher, *, max_batch: int = 100) -> None:
        self._publisher = publisher
        self._max_batch = max_batch
        self._pending: dict[str, _Pending] = defaultdict(list)
        self._runner: asyncio.Task[None] | None = None

    async def publish(self, status: TwilioStatus) -> None:
        """Queue ``status``; return once the message holding it is confirmed, or raise."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending[status.key()].append((status, future))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._drain(), name="status-batcher")
        await future  # a caller that goes away cancels its own future only

    async def _drain(self) -> None:
        while self._pending:
            queued, self._pending = self._pending, defaultdict(list)
            batches = [
                members[i : i + self._max_batch]
                for members in queued.values()
                for i in range(0, len(members), self._max_batch)
            ]
            try:
                await asyncio.gather(*(self._send(batch) for batch in batches))
            except BaseException:  # cancelled (shutdown): no caller is left waiting
                for batch in batches:
                    _fail(batch, ConnectionError("status publishing stopped"))
                for waiting in self._pending.values():
                    _fail(waiting, ConnectionError("status publishing stopped"))
                self._pending = defaultdict(list)
                raise

    async def _send(self, batch: _Pending) -> None:
        statuses = [status for status, _ in batch]
        message: Message = statuses[0] if len(statuses) == 1 else TwilioStatuses(statuses=statuses)
        try:
            message_id = message.message_id()
            await self._publisher.publish(message, correlation_id=message_id, message_id=message_id)
        except Exception as exc:  # not confirmed: every callback in it is refused (503)
            _fail(batch, exc)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)


def _fail(batch: _Pending, exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
