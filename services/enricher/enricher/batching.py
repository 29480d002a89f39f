"""Coalescing reads: many concurrent handlers asking Exact for records by key cost one request.

A monthly invoicing run fires a webhook per invoice within seconds, and the consumer handles
up to ``prefetch`` of them at once. Each handler asks for its invoice (then its account and
contacts) by key; ``BatchLoader`` (the DataLoader pattern) holds the keys that arrive within
``window`` seconds, or until ``max_batch`` distinct keys are waiting, and fetches them together::

    load(a) ─┐
    load(b) ─┼─ window / max_batch ─▶ fetch([a, b, c]) ─▶ a → record, b → None (gone), c → ...
    load(c) ─┘                               └─ raises ─▶ every waiting load raises the same

``BatchingExactReader`` is the ``ExactReader`` the handlers get: one loader per (connection,
division, resource, field, select), each fetching through ``ExactBulkReader.get_where_in``
(``$filter=InvoiceID eq guid'a' or InvoiceID eq guid'b' ...``, or a sync API: ``sync``). A
window of 0 reads every key on its own, as if there were no batching. A batch asks for the
latest ``changed_before`` of its loads (a call without one means: as of the call), so every
load gets a state at least as new as it asked for.

A ``changed_before`` is stamped by another clock (ingress' at the webhook's arrival, the
database's at a cache entry's invalidation), so a read must start ``skew`` after it to be
sure it follows the change. But whoever loads has seen the change's notice already (its
delivery, the dropped entry): a read that starts after the load follows the change too,
whatever the clocks say. So each load asks for the earlier of the two, and no read waits for
a clock to catch up with another host's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID

from enricher.ports import ExactBulkReader, Record

__all__ = ["BatchLoader", "BatchingExactReader"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Every waiter may have been cancelled: mark the outcome seen so asyncio does not report
    # an exception "never retrieved".
    if not future.cancelled():
        future.exception()


class BatchLoader(Generic[K, V]):
    """Coalesces concurrent ``load(key)`` calls into one ``fetch(keys)`` per batch.

    ``fetch`` gets distinct keys and returns what it found; a key missing from its answer loads
    as None. ``sleep`` measures the window (injectable for tests).
    """

    def __init__(
        self,
        fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]],
        *,
        window: float,
        max_batch: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._fetch = fetch
        self._window = window
        self._max_batch = max(1, max_batch)
        self._sleep = sleep
        self._pending: dict[K, asyncio.Future[V | None]] = {}
        self._timer: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def load(self, key: K) -> V | None:
        """The value for ``key`` (None when the fetch did not find it)."""
        if self._window <= 0:
            return (await self._fetch([key])).get(key)
        future = self._pending.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            future.add_done_callback(_retrieve)
            self._pending[key] = future
            if len(self._pending) >= self._max_batch:
                self._dispatch()
            elif self._timer is None:
                self._timer = asyncio.get_running_loop().create_task(self._after_window())
        # shield: one caller giving up must not cancel the answer the others wait for
        return await asyncio.shield(future)

    async def aclose(self) -> None:
        """Fetch what is pending now and wait for every fetch in flight."""
        self._dispatch()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _after_window(self) -> None:
        await self._sleep(self._window)
        self._timer = None
        self._dispatch()

    def _dispatch(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        batch, self._pending = self._pending, {}
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: dict[K, asyncio.Future[V | None]]) -> None:
        try:
            found = await self._fetch(list(batch))
        except asyncio.CancelledError:
            for future in batch.values():
                future.cancel()
            raise
        except Exception as exc:  # whatever failed the request fails every key of the batch
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for key, future in batch.items():
            if not future.done():
                future.set_result(found.get(key))


def _guid(value: object) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


#: (connection, division, resource, field, select)
_Group = tuple[str, int, str, str, tuple[str, ...]]


class BatchingExactReader:
    """An ``ExactReader`` whose reads by key are coalesced per (connection, division, resource,
    field, select) into filtered requests of ``ExactBulkReader``."""

    def __init__(
        self,
        bulk: ExactBulkReader,
        *,
        window: float,
        max_batch: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        skew: timedelta = timedelta(seconds=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._bulk = bulk
        self._window = window
        self._max_batch = max_batch
        self._sleep = sleep
        #: how far the clocks that stamp ``changed_before`` may be behind ours
        self._skew = skew
        self._clock = clock
        self._loaders: dict[_Group, BatchLoader[UUID, list[Record]]] = {}
        #: group -> key -> the latest ``changed_before`` its pending loads asked for (None: now)
        self._needs: dict[_Group, dict[UUID, datetime | None]] = {}

    async def get_one(
        self,
        connection_id: str,
        division: int,
        resource: str,
        key_field: str,
        key: UUID,
        select: list[str],
        *,
        changed_before: datetime | None = None,
    ) -> Record | None:
        loader = self._loader(
            connection_id, division, resource, key_field, select, key, changed_before
        )
        rows = await loader.load(key)
        return rows[0] if rows else None

    async def get_all(
        self,
        connection_id: str,
        division: int,
        resource: str,
        field: str,
        value: UUID,
        select: list[str],
        *,
        changed_before: datetime | None = None,
    ) -> list[Record]:
        loader = self._loader(
            connection_id, division, resource, field, select, value, changed_before
        )
        rows = await loader.load(value)
        return list(rows or [])

    def _need(self, group: _Group, keys: list[UUID]) -> datetime | None:
        """The latest ``changed_before`` the keys of one batch asked for (None: now)."""
        asked = self._needs.get(group, {})
        needs = [asked.pop(key, None) for key in keys]
        if not needs or any(need is None for need in needs):
            return None
        return max(need for need in needs if need is not None)

    async def aclose(self) -> None:
        for loader in list(self._loaders.values()):
            with contextlib.suppress(Exception):
                await loader.aclose()

    def _loader(
        self,
        connection_id: str,
        division: int,
        resource: str,
        field: str,
        select: Sequence[str],
        key: UUID,
        changed_before: datetime | None,
    ) -> BatchLoader[UUID, list[Record]]:
        # The field is selected too: it is how each row finds the key that asked for it.
        columns = tuple(dict.fromkeys([field, *select]))
        group: _Group = (connection_id, division, resource, field, columns)
        if changed_before is not None:
            changed_before = min(changed_before + self._skew, self._clock())
        asked = self._needs.setdefault(group, {})
        if key in asked and (asked[key] is None or changed_before is None):
            asked[key] = None  # one load asks for "as of now": the key does
        else:
            earlier = asked.get(key)
            asked[key] = (
                max(changed_before, earlier) if earlier and changed_before else changed_before
            )
        loader = self._loaders.get(group)
        if loader is None:

            async def fetch(keys: list[UUID]) -> Mapping[UUID, list[Record]]:
                rows = await self._bulk.get_where_in(
                    connection_id,
                    division,
                    resource,
                    field,
                    keys,
                    list(columns),
                    changed_before=self._need(group, keys),
                )
                by_key: dict[UUID, list[Record]] = {}
                for row in rows:
                    key = _guid(row.get(field))
                    if key is not None:
                        by_key.setdefault(key, []).append(row)
                return by_key

            loader = BatchLoader(
                fetch, window=self._window, max_batch=self._max_batch, sleep=self._sleep
            )
            self._loaders[group] = loader
        return loader
