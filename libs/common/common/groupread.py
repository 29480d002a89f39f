"""GroupRead: reads by key from concurrent deliveries, one query for those that wait together.

The read-side twin of ``GroupCommit``. A consumer handling many deliveries at once asks the
database for one row (or a few) per delivery: each a pool acquire, a round trip and a
release. ``GroupRead.get`` queues the key instead; one runner fetches every key queued so far
(up to ``max_batch``) with one query, and keys queued while it runs form the next fetch. A
lone read waits for nobody: it is fetched at once.

A read returns what was committed before it was queued, as a read of its own would: a fetch
starts only after every key in it was queued. A fetch that fails fails every read in it with
its error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["GroupRead"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class GroupRead(Generic[K, V]):
    """Concurrent ``get(key)`` calls as one ``fetch(keys)`` per batch (see the module).

    ``fetch`` gets distinct keys and returns what it found; a key missing from its answer
    reads as None.
    """

    def __init__(
        self, fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]], *, max_batch: int = 500
    ) -> None:
        self._fetch = fetch
        self._max_batch = max(1, max_batch)
        self._pending: dict[K, asyncio.Future[V | None]] = {}
        self._runner: asyncio.Task[None] | None = None
        #: Fetches made, and keys read in them (for the tests).
        self.fetches = 0
        self.keys = 0

    async def get(self, key: K) -> V | None:
        """The value for ``key`` (None when the fetch did not find it)."""
        future = self._pending.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._pending[key] = future
            if self._runner is None or self._runner.done():
                self._runner = asyncio.get_running_loop().create_task(
                    self._drain(), name="group-read"
                )
        # shield: one caller giving up must not cancel the answer the others wait for
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._pending:
            keys = list(self._pending)[: self._max_batch]
            batch = {key: self._pending.pop(key) for key in keys}
            try:
                found = await self._fetch(keys)
            except Exception as exc:  # whatever failed the query fails every read of it
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:  # cancelled (shutdown): no reader is left waiting
                for future in [*batch.values(), *self._pending.values()]:
                    future.cancel()
                self._pending = {}
                raise
            self.fetches += 1
            self.keys += len(keys)
            for key, future in batch.items():
                if not future.done():
                    future.set_result(found.get(key))


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Every reader may have gone: mark the outcome seen so asyncio reports nothing.
    if not future.cancelled():
        future.exception()
