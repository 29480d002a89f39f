"""GroupCommit: units of database work from concurrent deliveries, committed together.

A consumer with a prefetch window handles many deliveries at once, and each used to run its
own transaction: a pool acquire, BEGIN, its statements, COMMIT (a WAL flush) and a release.
``GroupCommit.run`` queues the unit instead; one runner takes every unit queued so far (up to
``max_batch``) and runs them one after another on one connection in one transaction. Units
queued while a batch runs form the next batch, so batches grow with the load and a lone
delivery waits for nobody.

The guarantees stay those of one transaction per unit:

- ``run`` returns only after the batch that holds the unit has committed, so a delivery is
  acknowledged only once its effect is durable;
- a unit that raises (or a commit that fails) rolls the batch back, and every unit of it is
  then run again alone, in its own transaction: only the unit at fault fails, with its own
  error, and the others commit as if they had never been batched;
- a unit is a function of the connection only, and may run twice (once in a batch that
  rolled back): side effects other than its SQL (metrics, logs) belong after ``run``.

Units of one batch run in the order they were queued, so two deliveries about one row are
applied in arrival order, as one consumer would apply them one by one.

A ``Merged`` unit goes one step further: it is one item of a statement that can take many.
Queued ``Merged`` units that follow one another with the same ``merge`` run as one call of it
(one round trip for the run, its items applied in order by the statement), then each unit's
``finish`` on its own result; a merge that stops early at an item needing a follow-up
statement is called again for the rest after it. Alone, a ``Merged`` unit is a call with one
item. Since every
unit of a rolled-back batch runs again alone, an item at fault still fails alone.

A batch made only of ``Merged`` units marked ``single_statement`` with one ``merge`` (a merge
that answers every item in one call or raises, and finishes that run no statement then) is
that one call, sent without BEGIN and COMMIT: a statement alone is its own transaction,
committed before its answer comes back. Two round trips of three saved per batch, the same
guarantees: when the call raises, the batch runs again in a transaction, as any other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import asyncpg
import structlog

__all__ = ["GroupCommit", "Merged", "Unit", "in_transaction", "item", "json_function"]

T = TypeVar("T")
R = TypeVar("R")

#: A unit of work: its statements on the connection (an ``asyncpg.Connection``) it is given,
#: inside a transaction.
Unit = Callable[[Any], Awaitable[T]]

log = structlog.get_logger("common.groupcommit")


async def _as_is(db: Any, result: Any) -> Any:
    return result


@dataclass(frozen=True, eq=False, slots=True)
class Merged(Generic[R, T]):
    """A unit that is one ``item`` of ``merge``: a statement run once for many items (on the
    connection, in the transaction) that returns one result per item, in order. ``finish``
    turns the item's result into the unit's, and may run more statements on the connection
    (the rare follow-up one item needs); without one, the unit's result is the item's. Such a
    follow-up must come before the items queued after it: ``merge`` then stops after that
    item, returning fewer results than items, and the rest are merged again once the
    finishes of the first ones ran.

    ``single_statement``: outside a transaction block ``merge`` answers every item in its one
    call or raises, and ``finish`` then runs no statement, so a batch of such units needs no
    transaction around that call (a merge that may stop early says so with
    ``json_function(alone_flag=True)``, and raises when alone instead)."""

    merge: Callable[[Any, Sequence[Any]], Awaitable[Sequence[R]]]
    item: Any
    finish: Callable[[Any, R], Awaitable[T]] = _as_is
    single_statement: bool = False

    async def __call__(self, db: Any) -> T:
        """The unit alone: a call of ``merge`` with its one item."""
        (result,) = await self.merge(db, [self.item])
        return await self.finish(db, result)


def _json(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def item(kind: str, *args: Any) -> dict[str, Any]:
    """One item for a ``json_function``: ``{"k": kind, "a": [args]}``, with the values JSON has
    no type for as text (the SQL casts them back): uuids, timestamps (ISO 8601), bytes (hex)."""
    return {"k": kind, "a": [_json(a) for a in args]}


def json_function(
    name: str, *, alone_flag: bool = False
) -> Callable[[Any, Sequence[dict[str, Any]]], Awaitable[list[Any]]]:
    """A ``Merged`` unit's merge: SQL function ``name`` (``jsonb`` -> ``SETOF jsonb``) called
    once with the items as a JSON array; its rows, one per item applied. Make one per function
    (at import) and share it: units merge only with units of the same merge.

    ``alone_flag``: the function takes a second argument, true when the call is its own
    transaction (no transaction block open on the connection: a single-statement batch). A
    function that would stop early for a follow-up raises then instead, and the batch runs
    again in a transaction, where it may stop."""

    query = f"SELECT {name}($1::jsonb{', $2' if alone_flag else ''}) AS r"

    async def merge(db: Any, items: Sequence[dict[str, Any]]) -> list[Any]:
        if alone_flag:
            rows = await db.fetch(query, list(items), not db.is_in_transaction())
        else:
            rows = await db.fetch(query, list(items))
        return [row["r"] for row in rows]

    merge.__qualname__ = f"json_function({name})"
    return merge


async def _run_all(db: Any, units: Sequence[Unit[Any]]) -> list[Any]:
    """Run ``units`` in order on ``db``, a run of ``Merged`` units with one ``merge`` as one
    call of it; their results, in order."""
    results: list[Any] = []
    i = 0
    while i < len(units):
        unit = units[i]
        if not isinstance(unit, Merged):
            results.append(await unit(db))
            i += 1
            continue
        j = i + 1
        while j < len(units):
            nxt = units[j]
            if not isinstance(nxt, Merged) or nxt.merge != unit.merge:
                break
            j += 1
        run: Sequence[Merged[Any, Any]] = units[i:j]  # type: ignore[assignment]
        while run:
            merged = await unit.merge(db, [u.item for u in run])
            if not 0 < len(merged) <= len(run):
                raise RuntimeError(f"{len(merged)} results for {len(run)} merged items")
            # A merge may stop after an item whose finish must run before the items after it:
            # those go into the next call.
            for member, result in zip(run, merged, strict=False):
                results.append(await member.finish(db, result))
            run = run[len(merged) :]
        i = j
    return results


class GroupCommit:
    """Runs units queued by concurrent callers in shared transactions (see the module)."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 100) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._pending: list[tuple[Unit[Any], asyncio.Future[Any]]] = []
        self._runner: asyncio.Task[None] | None = None
        #: Batches committed, and units committed in them (for the metrics and the tests).
        self.batches = 0
        self.units = 0

    async def run(self, unit: Unit[T]) -> T:
        """Run ``unit`` in a transaction shared with the units queued beside it; return its
        result once that transaction has committed, or raise its own error."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((unit, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(
                self._drain(), name="group-commit"
            )
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            try:
                await self._batch(batch)
            except Exception as exc:  # no connection to be had: every unit of it fails
                self._fail(batch, exc)
            except BaseException:  # cancelled (shutdown): the callers see their work stop
                waiting, self._pending = batch + self._pending, []
                self._fail(waiting, ConnectionError("group commit stopped"))
                raise

    @staticmethod
    def _fail(batch: list[tuple[Unit[Any], asyncio.Future[Any]]], exc: Exception) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(exc)

    async def _batch(self, batch: list[tuple[Unit[Any], asyncio.Future[Any]]]) -> None:
        live = [(unit, future) for unit, future in batch if not future.cancelled()]
        if not live:
            return
        async with self._pool.acquire() as db:
            if _one_statement(live):
                try:
                    results = await _statement_alone(
                        db, [u for u, _ in live if isinstance(u, Merged)]
                    )
                except Exception as exc:
                    # an item needing a follow-up in a transaction, or one at fault (the
                    # statement rolled back whole): the batch in a transaction, below
                    log.debug("group_commit_split", units=len(live), error=type(exc).__name__)
                else:
                    self._done(live, results)
                    return
            if len(live) > 1:
                try:
                    async with db.transaction():
                        results = await _run_all(db, [unit for unit, _ in live])
                except Exception as exc:
                    # one unit (or the commit) failed: each is run alone below
                    log.debug("group_commit_split", units=len(live), error=type(exc).__name__)
                else:
                    self._done(live, results)
                    return
            for unit, future in live:
                try:
                    async with db.transaction():
                        result = await unit(db)
                except Exception as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    self.batches += 1
                    self.units += 1
                    if not future.done():
                        future.set_result(result)

    def _done(self, live: list[tuple[Unit[Any], asyncio.Future[Any]]], results: list[Any]) -> None:
        self.batches += 1
        self.units += len(live)
        for (_, future), result in zip(live, results, strict=True):
            if not future.done():
                future.set_result(result)


def _one_statement(live: list[tuple[Unit[Any], asyncio.Future[Any]]]) -> bool:
    """Whether the batch is one call of one merge that needs no transaction around it."""
    first = live[0][0]
    return isinstance(first, Merged) and all(
        isinstance(unit, Merged) and unit.single_statement and unit.merge == first.merge
        for unit, _ in live
    )


async def _statement_alone(db: Any, units: Sequence[Merged[Any, Any]]) -> list[Any]:
    """The units' one merge call, outside a transaction block: the statement commits alone."""
    merged = await units[0].merge(db, [u.item for u in units])
    if len(merged) != len(units):
        raise RuntimeError(f"{len(merged)} results for {len(units)} single-statement items")
    return [await u.finish(db, result) for u, result in zip(units, merged, strict=True)]


async def in_transaction(pool: asyncpg.Pool, unit: Unit[T], group: GroupCommit | None) -> T:
    """Run ``unit`` in a transaction: a shared one through ``group`` when there is one (the
    unit may then run twice: it only writes, counting and logging come after), else its own."""
    if group is not None:
        return await group.run(unit)
    async with pool.acquire() as db, db.transaction():
        return await unit(db)
