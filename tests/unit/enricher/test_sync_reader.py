"""SyncReader: a caller that needs a newer catch-up than the one that just finished starts it,
whatever order the event loop wakes the callers in."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from enricher.sync import SyncReader

INVOICES = "salesinvoice/SalesInvoices"
START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Feed:
    """Exact's sync API for invoices: the first read answers only once ``first_done`` is about
    to be seen by a second caller (woken, in the same loop turn, before the read's task
    finishes), the reads after it at once."""

    def __init__(self, clock: Clock, invoice: UUID) -> None:
        self.clock = clock
        self.invoice = invoice
        self.reads = 0
        self.second_caller = asyncio.Event()

    async def sync_start(
        self, connection_id: str, division: int, endpoint: str, modified: datetime
    ) -> int | None:
        return 1

    async def get_sync(
        self, connection_id: str, division: int, path: str, after: int, select: list[str]
    ) -> list[dict[str, object]]:
        self.reads += 1
        if self.reads == 1:
            # The invoice is issued now, after this read started: a caller asking for it
            # needs a catch-up that starts later. Waking that caller here queues it before
            # this read's task has finished (and before the task's done callbacks).
            self.clock.now = START + timedelta(seconds=30)
            self.second_caller.set()
            return []
        row = {"InvoiceID": str(self.invoice), "ID": str(self.invoice), "Timestamp": 7}
        return [row]


class NoFallback:
    async def get_where_in(self, *args: object, **kwargs: object) -> list[dict[str, object]]:
        raise AssertionError("the sync table should answer")


def _run_with_deadline(coro_factory, seconds: float) -> object:  # type: ignore[no-untyped-def]
    """Run a coroutine on its own loop in a thread; a loop that never yields cannot be
    interrupted by asyncio's own timeouts, so the deadline is the thread's."""
    result: dict[str, object] = {}

    def target() -> None:
        result["value"] = asyncio.run(coro_factory())

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the reader did not return within {seconds} s"
    return result["value"]


def test_a_caller_woken_as_an_older_catch_up_finishes_starts_a_newer_one_instead_of_spinning():
    invoice = uuid4()

    async def scenario() -> tuple[list[object], int]:
        clock = Clock()
        feed = Feed(clock, invoice)
        reader = SyncReader(feed, NoFallback(), clock=clock, skew=timedelta(0))  # type: ignore[arg-type]
        columns = ["InvoiceID", "InvoiceNumber"]

        async def first() -> list[object]:
            return await reader.get_where_in(
                "c", 1, INVOICES, "InvoiceID", [invoice], columns, changed_before=START
            )

        async def second() -> list[object]:
            await feed.second_caller.wait()
            return await reader.get_where_in(
                "c", 1, INVOICES, "InvoiceID", [invoice], columns, changed_before=clock.now
            )

        early, late = await asyncio.gather(first(), second())
        return [early, late], feed.reads

    (early, late), reads = _run_with_deadline(scenario, 10)  # type: ignore[misc]
    # both callers returned; the one that needed the newer catch-up got the invoice from it
    assert [row["InvoiceID"] for row in late] == [str(invoice)]  # type: ignore[index]
    assert isinstance(early, list)
    assert reads == 2
