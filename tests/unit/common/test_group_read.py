"""GroupRead: concurrent reads by key become one fetch per batch, a lone read goes at once,
each reader gets its own key's value, and a failed fetch fails only the reads in it."""

from __future__ import annotations

import asyncio

import pytest

from common.groupread import GroupRead

pytestmark = pytest.mark.asyncio


class Table:
    """A fetch over a dict that records the keys of every call."""

    def __init__(self, rows: dict[int, str]) -> None:
        self.rows = rows
        self.calls: list[list[int]] = []
        self.fail_next = False

    async def fetch(self, keys: list[int]) -> dict[int, str]:
        self.calls.append(keys)
        await asyncio.sleep(0.01)  # a round trip: reads queue meanwhile
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("database went away")
        return {k: self.rows[k] for k in keys if k in self.rows}


async def test_concurrent_reads_are_fetched_together_and_each_gets_its_own_value():
    table = Table({i: f"row {i}" for i in range(100)})
    reads = GroupRead(table.fetch)
    found = await asyncio.gather(*(reads.get(i % 120) for i in range(240)))
    assert found == [f"row {i % 120}" if i % 120 < 100 else None for i in range(240)]
    assert sorted(k for call in table.calls for k in call) == list(range(120))  # once each
    assert len(table.calls) <= 2, table.calls  # the first alone at most, then the rest


async def test_a_lone_read_is_fetched_at_once_and_a_later_one_sees_a_later_state():
    table = Table({1: "old"})
    reads = GroupRead(table.fetch)
    assert await reads.get(1) == "old"
    table.rows[1] = "new"  # committed after the first read returned
    assert await reads.get(1) == "new"
    assert table.calls == [[1], [1]]


async def test_a_failed_fetch_fails_the_reads_in_it_and_not_the_next_ones():
    table = Table({i: str(i) for i in range(10)})
    reads = GroupRead(table.fetch, max_batch=5)
    table.fail_next = True
    outcomes = await asyncio.gather(*(reads.get(i) for i in range(10)), return_exceptions=True)
    failed = [i for i, o in enumerate(outcomes) if isinstance(o, ConnectionError)]
    assert failed == list(range(5))  # the first batch of five
    assert outcomes[5:] == ["5", "6", "7", "8", "9"]
