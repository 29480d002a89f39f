"""Reconciliation watermarks in the enricher's schema: one replica per division at a time, and
marks (a ``Modified`` time, a sync row version) that only move where they are committed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common import db
from common.testing.infra import unique
from enricher.adapters.watermarks import PostgresWatermarks
from enricher.reconcile import Mark

pytestmark = pytest.mark.integration


async def test_one_replica_holds_a_division_and_marks_round_trip(database_url):
    async with db.pool(database_url) as first_pool, db.pool(database_url) as second_pool:
        await db.migrate(first_pool, "enricher", "enricher")
        first, second = PostgresWatermarks(first_pool), PostgresWatermarks(second_pool)
        connection = unique("conn")
        async with first.exclusive(connection, 7) as mine:
            assert mine
            async with second.exclusive(connection, 7) as theirs:
                assert not theirs
            async with second.exclusive(connection, 8) as other_division:
                assert other_division
        async with second.exclusive(connection, 7) as now_theirs:
            assert now_theirs
        assert await first.load(connection, 7) == {}
        mark = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
        await first.commit(connection, 7, {"SalesEntries": Mark(mark)})
        later = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
        await second.commit(connection, 7, {"SalesEntries": Mark(later), "Payments": Mark(mark)})
        assert await first.load(connection, 7) == {
            "SalesEntries": Mark(later),
            "Payments": Mark(mark),
        }
        assert await first.load(connection, 8) == {}


async def test_a_sync_cursor_is_a_bigint_that_survives_a_restart_and_is_never_dropped(
    database_url,
):
    connection = unique("conn")
    # Exact's row versions are Int64: past 2**31
    cursor = 2**40 + 7
    mark = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    async with db.pool(database_url) as pool:
        await db.migrate(pool, "enricher", "enricher")
        await PostgresWatermarks(pool).commit(
            connection, 7, {"SalesInvoices": Mark(mark, cursor), "SalesOrders": Mark(mark)}
        )
    async with db.pool(database_url) as pool:  # a new process
        restarted = PostgresWatermarks(pool)
        assert await restarted.load(connection, 7) == {
            "SalesInvoices": Mark(mark, cursor),
            "SalesOrders": Mark(mark, None),
        }
        # a mark without a cursor never drops the stored one
        later = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
        await restarted.commit(connection, 7, {"SalesInvoices": Mark(later, None)})
        assert (await restarted.load(connection, 7))["SalesInvoices"] == Mark(later, cursor)
