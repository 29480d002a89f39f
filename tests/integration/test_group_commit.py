"""GroupCommit on a real PostgreSQL: concurrent units share transactions, and a unit that fails
fails alone while the units batched with it commit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from common import db
from common.groupcommit import GroupCommit, Merged

pytestmark = pytest.mark.asyncio


async def _table(pool: Any) -> None:
    await pool.execute("CREATE TABLE IF NOT EXISTS gc_rows (id int PRIMARY KEY, note text)")


def _insert(row_id: int, note: str = "ok") -> Any:
    async def unit(conn: Any) -> int:
        await conn.execute("INSERT INTO gc_rows (id, note) VALUES ($1, $2)", row_id, note)
        return row_id * 10

    return unit


async def test_concurrent_units_commit_in_fewer_transactions_than_units(
    private_database_url: str,
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        await _table(pool)
        group = GroupCommit(pool, max_batch=50)
        results = await asyncio.gather(*(group.run(_insert(i)) for i in range(200)))
        assert results == [i * 10 for i in range(200)]
        assert group.units == 200
        assert group.batches < 200 / 4, f"{group.batches} transactions for 200 units"
        # what run() returned is committed: another connection sees every row
        assert await pool.fetchval("SELECT count(*) FROM gc_rows") == 200


async def test_a_failing_unit_fails_alone_and_its_batch_mates_commit(
    private_database_url: str,
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        await _table(pool)
        await pool.execute("INSERT INTO gc_rows (id, note) VALUES (7, 'taken')")
        group = GroupCommit(pool, max_batch=50)

        async def fails_after_writing(conn: Any) -> None:
            await conn.execute("INSERT INTO gc_rows (id, note) VALUES (1000, 'half')")
            raise ValueError("refused by the unit itself")

        units = [_insert(i) for i in range(20)]  # id 7 breaks a unique key
        units.insert(10, fails_after_writing)
        outcomes = await asyncio.gather(*(group.run(u) for u in units), return_exceptions=True)

        failures = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failures) == 2
        assert any(isinstance(f, ValueError) and "refused" in str(f) for f in failures)
        assert any("duplicate key" in str(f) for f in failures)
        rows = dict(await pool.fetch("SELECT id, note FROM gc_rows"))  # type: ignore[arg-type]
        assert sorted(rows) == sorted(set(range(20)))  # 19 new rows and the earlier 7
        assert rows[7] == "taken"
        assert 1000 not in rows  # the failing unit's own write was rolled back


async def test_units_of_one_batch_apply_in_the_order_they_were_queued(
    private_database_url: str,
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        await _table(pool)
        await pool.execute("INSERT INTO gc_rows (id, note) VALUES (1, '')")
        group = GroupCommit(pool, max_batch=100)

        def append(letter: str) -> Any:
            async def unit(conn: Any) -> None:
                await conn.execute("UPDATE gc_rows SET note = note || $1 WHERE id = 1", letter)

            return unit

        letters = [chr(ord("a") + i % 26) for i in range(60)]
        await asyncio.gather(*(group.run(append(x)) for x in letters))
        assert await pool.fetchval("SELECT note FROM gc_rows WHERE id = 1") == "".join(letters)


async def test_a_stopped_runner_fails_every_waiting_unit_instead_of_leaving_it_hanging(
    private_database_url: str,
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        group = GroupCommit(pool, max_batch=1)
        started, never = asyncio.Event(), asyncio.Event()

        async def blocks(conn: Any) -> None:
            started.set()
            await never.wait()

        first = asyncio.create_task(group.run(blocks))
        await started.wait()
        queued = [asyncio.create_task(group.run(_insert(i))) for i in range(3)]
        await asyncio.sleep(0)
        assert group._runner is not None
        group._runner.cancel()  # the service stops while units wait
        outcomes = await asyncio.gather(first, *queued, return_exceptions=True)
        assert all(isinstance(o, ConnectionError) for o in outcomes), outcomes


class _BulkInsert:
    """A merge: many rows in one INSERT, one round trip; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def __call__(self, conn: Any, items: Any) -> list[int]:
        self.calls.append(len(items))
        rows = await conn.fetch(
            """INSERT INTO gc_rows (id, note)
               SELECT i, n FROM unnest($1::int[], $2::text[]) WITH ORDINALITY AS t(i, n, o)
               ORDER BY o RETURNING id""",
            [i for i, _ in items],
            [n for _, n in items],
        )
        return [r["id"] for r in rows]


def _merged(
    merge: _BulkInsert, row_id: int, note: str = "ok", *, single: bool = False
) -> Merged[int, int]:
    async def finish(conn: Any, inserted: int) -> int:
        return inserted * 10

    return Merged(merge, (row_id, note), finish, single_statement=single)


class _InTransaction(_BulkInsert):
    """The same merge, noting whether each call ran inside a transaction block."""

    def __init__(self) -> None:
        super().__init__()
        self.in_block: list[bool] = []

    async def __call__(self, conn: Any, items: Any) -> list[int]:
        self.in_block.append(conn.is_in_transaction())
        return await super().__call__(conn, items)


async def test_single_statement_units_run_as_one_call_without_begin_and_commit(
    private_database_url: str,
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        await _table(pool)
        group = GroupCommit(pool, max_batch=100)
        merge = _InTransaction()
        results = await asyncio.gather(
            *(group.run(_merged(merge, i, single=True)) for i in range(50))
        )
        assert results == [i * 10 for i in range(50)]
        assert (merge.calls, merge.in_block) == ([50], [False])
        # committed when run() returned: another connection sees every row
        other = await asyncpg.connect(private_database_url)
        try:
            assert await other.fetchval("SELECT count(*) FROM gc_rows") == 50
        finally:
            await other.close()


async def test_merged_units_queued_together_run_as_one_statement_and_each_gets_its_result(
    private_database_url: str,
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        await _table(pool)
        group = GroupCommit(pool, max_batch=100)
        merge = _BulkInsert()
        results = await asyncio.gather(*(group.run(_merged(merge, i)) for i in range(100)))
        assert results == [i * 10 for i in range(100)]
        assert sum(merge.calls) == 100
        # queued before the runner started: one batch, one statement
        assert merge.calls == [100]
        assert await pool.fetchval("SELECT count(*) FROM gc_rows") == 100


async def test_a_plain_unit_between_merged_ones_keeps_its_place_in_the_order(
    private_database_url: str,
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        await _table(pool)
        group = GroupCommit(pool, max_batch=100)
        merge = _BulkInsert()

        async def mark_all(conn: Any) -> int:
            return int((await conn.execute("UPDATE gc_rows SET note = 'marked'")).split()[-1])

        units: list[Any] = [_merged(merge, i) for i in range(5)]
        units.append(mark_all)
        units += [_merged(merge, i) for i in range(5, 10)]
        results = await asyncio.gather(*(group.run(u) for u in units))
        assert results[5] == 5  # it saw the five queued before it, not the five after
        rows = dict(await pool.fetch("SELECT id, note FROM gc_rows"))  # type: ignore[arg-type]
        assert rows == {**dict.fromkeys(range(5), "marked"), **dict.fromkeys(range(5, 10), "ok")}


@pytest.mark.parametrize("single", [False, True], ids=["in-a-transaction", "single-statement"])
async def test_a_failing_merged_item_fails_alone_and_the_items_merged_with_it_commit(
    private_database_url: str, single: bool
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        await _table(pool)
        await pool.execute("INSERT INTO gc_rows (id, note) VALUES (7, 'taken')")
        group = GroupCommit(pool, max_batch=100)
        merge = _InTransaction()
        outcomes = await asyncio.gather(
            *(group.run(_merged(merge, i, "new", single=single)) for i in range(20)),
            return_exceptions=True,
        )
        assert [i for i, o in enumerate(outcomes) if isinstance(o, BaseException)] == [7]
        assert "duplicate key" in str(outcomes[7])
        rows = dict(await pool.fetch("SELECT id, note FROM gc_rows"))  # type: ignore[arg-type]
        assert rows == {**dict.fromkeys(range(20), "new"), 7: "taken"}
        # the batch in a transaction rolled back, then each unit ran alone in its own; a
        # single-statement batch was first the call alone (rolled back whole)
        first = [(20, False)] if single else []
        assert (
            list(zip(merge.calls, merge.in_block, strict=True))
            == first + [(20, True)] + [(1, True)] * 20
        )
        if single:
            # a lone unit at fault is run again in a transaction (where a merge that must
            # stop early may), and fails with its own error
            merge.calls.clear()
            merge.in_block.clear()
            with pytest.raises(asyncpg.UniqueViolationError):
                await group.run(_merged(merge, 7, single=True))
            assert (merge.calls, merge.in_block) == ([1, 1], [False, True])


async def test_a_merge_that_stops_early_lets_a_follow_up_run_before_the_items_after_it(
    private_database_url: str,
) -> None:
    async with db.pool(private_database_url, max_size=2) as pool:
        await _table(pool)
        group = GroupCommit(pool, max_batch=100)
        calls: list[int] = []

        async def stops_after_a_flagged_item(conn: Any, items: Any) -> list[int]:
            calls.append(len(items))
            done: list[int] = []
            for row_id, note in items:
                await conn.execute("INSERT INTO gc_rows (id, note) VALUES ($1, $2)", row_id, note)
                done.append(row_id)
                if note == "follow-up":
                    break
            return done

        async def finish(conn: Any, row_id: int) -> str:
            if row_id == 3:  # the follow-up: what the items after it must already see
                await conn.execute("UPDATE gc_rows SET note = 'seen'")
            return str(await conn.fetchval("SELECT count(*) FROM gc_rows"))

        units = [
            Merged(stops_after_a_flagged_item, (i, "follow-up" if i == 3 else "ok"), finish)
            for i in range(8)
        ]
        results = await asyncio.gather(*(group.run(u) for u in units))
        assert calls == [8, 4]  # stopped after 0..3; 4..7 in a second call
        assert results == ["4"] * 4 + ["8"] * 4  # the first finishes ran before 4..7
        rows = dict(await pool.fetch("SELECT id, note FROM gc_rows"))  # type: ignore[arg-type]
        assert rows == {**dict.fromkeys(range(4), "seen"), **dict.fromkeys(range(4, 8), "ok")}


async def test_json_parameters_reach_postgresql_as_the_standard_library_writes_them(
    private_database_url: str,
) -> None:
    """The pool's json/jsonb codec (orjson) writes what json.dumps would: PostgreSQL parses
    both to the same value, keys that are not strings included, and reads it back."""
    value = {
        "text": "Factuur 2026/0042 — € 1.234,56 ✓",
        "nested": [1, 2.5, None, True, {"deep": ["a", {"b": 0}]}],
        7: "an int key",
        "big": 2**53 + 1,
    }
    async with db.pool(private_database_url, max_size=1) as pool:
        ours, standard = await pool.fetchrow(
            "SELECT $1::jsonb AS ours, $2::text::jsonb AS standard", value, json.dumps(value)
        )
        assert ours == standard
        assert ours["7"] == "an int key"
        assert ours["big"] == 2**53 + 1
        assert ours["nested"][4] == {"deep": ["a", {"b": 0}]}
