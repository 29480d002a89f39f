"""SyncReader's tables answer reads by key and by another field (every contact of an account)
from what the last catch-up left, including rows that changed account or were deleted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from enricher.sync import SyncReader

CONTACTS = "crm/Contacts"
START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


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


class NoFallback:
    async def get_where_in(self, *args: object, **kwargs: object) -> list[dict[str, object]]:
        raise AssertionError("a full table answers every key")


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
