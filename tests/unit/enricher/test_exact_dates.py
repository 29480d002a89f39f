"""Exact's dates across DST changes (docs/exact-dates.md): a date field means the same day
whichever midnight Exact wrote, ``DueDate + N days`` lands on the Nth day after it, and a
reconciliation watermark in the hour the clocks go back reads that hour again."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from common.contracts import ExactWebhookReceived
from enricher.documents import exact_date
from enricher.reconcile import Mark, reconcile, repeated_hour_start
from enricher.rules import Timing

AMS = "Europe/Amsterdam"


def ms(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)})/"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("written", "day"),
    [
        # the knowledge base's reading: local wall time written as if UTC
        (utc(2026, 3, 27), date(2026, 3, 27)),  # winter, the Friday before the change
        (utc(2026, 3, 30), date(2026, 3, 30)),  # summer, the Monday after
        (utc(2026, 10, 26), date(2026, 10, 26)),
        # a client reading true instants: Amsterdam midnight is 23:00Z (CET) / 22:00Z (CEST)
        (utc(2026, 3, 26, 23), date(2026, 3, 27)),
        (utc(2026, 3, 29, 22), date(2026, 3, 30)),
        (utc(2026, 10, 25, 23), date(2026, 10, 26)),
    ],
)
def test_a_due_date_is_the_same_day_whichever_midnight_exact_wrote(written, day):
    assert exact_date(ms(written)) == day


def test_a_missing_or_unreadable_date_is_none():
    assert exact_date(None) is None
    assert exact_date("2026-03-27") is None


@pytest.mark.parametrize("written", [utc(2026, 3, 27), utc(2026, 3, 26, 23)])
def test_three_days_after_a_due_date_across_the_spring_change_is_still_the_third_day(written):
    due = Timing.parse("DueDate + 3 days").due({"DueDate": ms(written)}, utc(2026, 3, 1))

    # Friday 27 March + 3 days: Monday 30 March (00:00 UTC, 02:00 CEST), never Sunday
    assert due == utc(2026, 3, 30)
    assert due.astimezone(ZoneInfo(AMS)).date() == date(2026, 3, 30)


@pytest.mark.parametrize("written", [utc(2026, 10, 23), utc(2026, 10, 22, 22)])
def test_three_days_after_a_due_date_across_the_autumn_change_is_still_the_third_day(written):
    due = Timing.parse("DueDate + 3 days").due({"DueDate": ms(written)}, utc(2026, 10, 1))

    # Friday 23 October + 3 days: Monday 26 October (00:00 UTC, 01:00 CET), never Sunday
    assert due == utc(2026, 10, 26)
    assert due.astimezone(ZoneInfo(AMS)).date() == date(2026, 10, 26)


def test_only_a_watermark_in_the_repeated_hour_reaches_back_to_its_start():
    assert repeated_hour_start(utc(2026, 10, 25, 2, 50), AMS) == utc(2026, 10, 25, 2)
    assert repeated_hour_start(utc(2026, 10, 25, 2, 0), AMS) == utc(2026, 10, 25, 2)
    assert repeated_hour_start(utc(2026, 10, 25, 3, 0), AMS) is None
    assert repeated_hour_start(utc(2026, 10, 25, 1, 59), AMS) is None
    assert repeated_hour_start(utc(2026, 3, 29, 2, 30), AMS) is None  # skipped, not repeated
    assert repeated_hour_start(utc(2026, 10, 18, 2, 50), AMS) is None


class FakeExact:
    def __init__(self, rows: dict[str, list[dict]]) -> None:
        self.rows = rows
        self.filters: dict[str, str] = {}

    async def get_filtered(self, connection_id, division, resource, filter_, select):  # type: ignore[no-untyped-def]
        self.filters[resource] = filter_
        return self.rows.get(resource, [])

    async def get_sync(self, connection_id, division, path, after, select):  # type: ignore[no-untyped-def]
        return []

    async def sync_start(self, connection_id, division, endpoint, modified):  # type: ignore[no-untyped-def]
        return None


async def test_a_change_stamped_in_the_second_0200_to_0300_is_not_skipped():
    # Exact's wall time: 02:50 CEST read by the last pass, then the clocks went back and a sales
    # entry changed at 02:10 CET, stamped earlier than the watermark
    invoice = uuid4()
    mark = utc(2026, 10, 25, 2, 50)
    exact = FakeExact(
        {
            "salesentry/SalesEntries": [
                {"EntryID": str(invoice), "Modified": ms(utc(2026, 10, 25, 2, 10))}
            ]
        }
    )
    found = await reconcile(
        "default",
        7,
        "client",
        exact=exact,
        watermarks={"SalesEntries": Mark(mark)},
        now=utc(2026, 10, 25, 2, 15),
        lookback=timedelta(days=1),
        overlap=timedelta(minutes=5),
        time_zone=AMS,
    )

    assert exact.filters["salesentry/SalesEntries"] == ("Modified gt datetime'2026-10-25T01:55:00'")
    assert [m.key_id for m in found.messages if isinstance(m, ExactWebhookReceived)] == [invoice]
    assert found.watermarks["SalesEntries"] == Mark(mark)  # never moves back


async def test_a_watermark_on_an_ordinary_night_reads_back_only_the_overlap():
    exact = FakeExact({})
    await reconcile(
        "default",
        7,
        "client",
        exact=exact,
        watermarks={"SalesEntries": Mark(utc(2026, 10, 18, 2, 50))},
        now=utc(2026, 10, 18, 3),
        lookback=timedelta(days=1),
        overlap=timedelta(minutes=5),
        time_zone=AMS,
    )
    assert exact.filters["salesentry/SalesEntries"] == ("Modified gt datetime'2026-10-18T02:45:00'")


def test_a_value_with_a_time_of_day_is_an_instant_not_rounded_to_a_day():
    written = utc(2026, 3, 26, 23, 30, 12)  # not on a whole hour: not a date-only value
    due = Timing.parse("DueDate + 3 days").due({"DueDate": ms(written)}, utc(2026, 3, 1))

    assert exact_date(ms(written)) == date(2026, 3, 26)
    assert due == written + timedelta(days=3)
