"""Reconciliation watermarks in the enricher's schema: one replica per division at a time, and
marks that only move where they are committed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from common import db
from common.testing.infra import unique
from enricher.adapters.watermarks import PostgresWatermarks

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
        await first.commit(connection, 7, {"SalesInvoices": mark})
        later = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
        await second.commit(connection, 7, {"SalesInvoices": later, "Payments": mark})
        assert await first.load(connection, 7) == {"SalesInvoices": later, "Payments": mark}
        assert await first.load(connection, 8) == {}
