"""SyncReader: a caller that needs a newer catch-up than the one that just finished starts it,
whatever order the event loop wakes the callers in; its tables answer reads by key and by
another field (every contact of an account) from what the last catch-up left, including rows
that changed account or were deleted."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from enricher.batching import BatchingExactReader
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
        reader = SyncReader(feed, NoFallback(), clock=clock)  # type: ignore[arg-type]
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


class StampedFeed:
    """Exact's sync API for invoices, counting reads and the asyncio sleeps around them."""

    def __init__(self, invoice: UUID) -> None:
        self.invoice = invoice
        self.reads = 0

    async def sync_start(self, *args: object) -> int | None:
        return 1

    async def get_sync(self, *args: object) -> list[dict[str, object]]:
        self.reads += 1
        return [{"InvoiceID": str(self.invoice), "ID": str(self.invoice), "Timestamp": 3}]


def test_a_change_stamped_ahead_of_our_clock_is_read_by_a_catch_up_started_now_not_waited_for(
    monkeypatch,
):
    invoice = uuid4()
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def counted_sleep(delay: float, *args: object) -> object:
        slept.append(delay)
        return await real_sleep(0)

    async def scenario() -> tuple[list[object], int]:
        clock = Clock()
        feed = StampedFeed(invoice)
        reader = BatchingExactReader(
            SyncReader(feed, NoFallback(), clock=clock),  # type: ignore[arg-type]
            window=0,
            max_batch=60,
            skew=timedelta(seconds=1),
            clock=clock,
        )
        # ingress' clock is 20 s ahead of ours: its stamp is in our future
        ahead = START + timedelta(seconds=20)
        rows = [
            await reader.get_one(
                "c", 1, INVOICES, "InvoiceID", invoice, ["InvoiceNumber"], changed_before=ahead
            )
            for _ in range(2)  # the second in the same instant: the first's catch-up will do
        ]
        return rows, feed.reads

    monkeypatch.setattr(asyncio, "sleep", counted_sleep)
    rows, reads = _run_with_deadline(scenario, 10)  # type: ignore[misc]
    assert [row["InvoiceID"] for row in rows] == [str(invoice)] * 2  # type: ignore[index]
    assert reads == 1
    assert slept == []


CONTACTS = "crm/Contacts"


class ScriptedFeed:
    """Exact's sync API for contacts: each catch-up gets the next batch of changed rows and of
    deletions (``sync/Deleted``, entity type 5)."""

    def __init__(self, changes: list[list[dict[str, object]]], deletions: list[list[UUID]]):
        self.changes = changes
        self.deletions = deletions
        self.reads = 0

    async def sync_start(self, *args: object) -> int | None:
        raise AssertionError("contacts are a full table: read from row version 1")

    async def get_sync(
        self, connection_id: str, division: int, path: str, after: int, select: list[str]
    ) -> list[dict[str, object]]:
        if path == "sync/Deleted":
            gone = self.deletions[self.reads - 1] if self.reads <= len(self.deletions) else []
            return [{"EntityKey": str(key), "EntityType": 5, "Timestamp": 100} for key in gone]
        self.reads += 1
        return self.changes[self.reads - 1] if self.reads <= len(self.changes) else []


def _contact(contact: UUID, account: UUID, stamp: int) -> dict[str, object]:
    return {"ID": str(contact), "Account": str(account), "Timestamp": stamp}


def _ids(rows: list[dict[str, object]]) -> set[UUID]:
    return {UUID(str(row["ID"])) for row in rows}


def test_reads_by_account_follow_contacts_that_moved_or_were_deleted_between_catch_ups():
    first_account, second_account = uuid4(), uuid4()
    stays, moves, deleted = uuid4(), uuid4(), uuid4()
    feed = ScriptedFeed(
        changes=[
            [
                _contact(stays, first_account, 1),
                _contact(moves, first_account, 2),
                _contact(deleted, first_account, 3),
            ],
            [_contact(moves, second_account, 4)],
        ],
        deletions=[[], [deleted]],
    )
    clock = Clock()
    reader = SyncReader(feed, NoFallback(), clock=clock)

    async def by_account(*accounts: UUID) -> set[UUID]:
        rows = await reader.get_where_in(
            "default", 1, CONTACTS, "Account", list(accounts), ["ID", "Account"]
        )
        return _ids(rows)

    async def scenario() -> tuple[set[UUID], set[UUID], set[UUID], set[UUID], set[UUID]]:
        before = await by_account(first_account)
        before_second = await by_account(second_account)
        clock.now = START + timedelta(seconds=10)  # a read asked now needs a newer catch-up
        after = await by_account(first_account)
        after_second = await by_account(second_account)
        both = await by_account(first_account, second_account)
        return before, before_second, after, after_second, both

    before, before_second, after, after_second, both = asyncio.run(scenario())

    assert before == {stays, moves, deleted}
    assert before_second == set()
    assert after == {stays}
    assert after_second == {moves}
    assert both == {stays, moves}
    assert feed.reads == 2


def test_reads_by_key_answer_each_key_once_and_nothing_for_keys_the_table_lacks():
    account = uuid4()
    known, unknown = uuid4(), uuid4()
    feed = ScriptedFeed(changes=[[_contact(known, account, 1)]], deletions=[])
    reader = SyncReader(feed, NoFallback(), clock=Clock())

    rows = asyncio.run(
        reader.get_where_in("default", 1, CONTACTS, "ID", [known, unknown, known], ["ID"])
    )

    assert [UUID(str(row["ID"])) for row in rows] == [known]
