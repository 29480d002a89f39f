"""Two enricher replicas share Exact's limits through PostgreSQL (PostgresRateLimits): one
hourly error budget, the windows the last answer reported, one call at a time per division,
and a turn left by a replica that died runs out. Each replica is a RateGovernor on a pool of
its own; Exact is a scripted sender on a fake clock that the governors' sleep moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import pytest
import pytest_asyncio

from common import db
from common.errors import TransientError
from enricher.adapters.ratelimits import PostgresRateLimits
from enricher.governor import RateGovernor

pytestmark = pytest.mark.integration

# 2026-11-25 12:00:10 UTC: ten seconds into a calendar minute
START = 1_795_608_010.0
ENDPOINT = "salesinvoice/SalesInvoices"
DIVISION = 3108123


class Clock:
    def __init__(self) -> None:
        self.now = START
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


@dataclass
class Answer:
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)


class Exact:
    """Answers with ``status`` and ``headers``; records the fake time of every request."""

    def __init__(self, clock: Clock, status: int = 200, headers: dict[str, str] | None = None):
        self.clock = clock
        self.status = status
        self.headers = headers or {}
        self.sent_at: list[float] = []

    async def send(self) -> Answer:
        self.sent_at.append(self.clock.now)
        return Answer(self.status, self.headers)


@dataclass
class Replicas:
    first: asyncpg.Pool
    second: asyncpg.Pool


@pytest_asyncio.fixture
async def replicas(database_url: str) -> AsyncIterator[Replicas]:
    async with (
        db.pool(database_url, max_size=2) as first,
        db.pool(database_url, max_size=2) as second,
    ):
        await db.migrate(first, "enricher", "enricher")
        yield Replicas(first, second)


@pytest.fixture
def connection_id() -> str:
    """A connection of this test's own: tests share the session's database."""
    return f"test-{uuid4().hex[:10]}"


def governor(pool: asyncpg.Pool, clock: Clock, **kwargs: float) -> RateGovernor:
    return RateGovernor(
        clock=clock, sleep=clock.sleep, store=PostgresRateLimits(pool, lease=5.0), **kwargs
    )


def minutely(remaining: int, *, now: float) -> dict[str, str]:
    return {
        "X-RateLimit-Minutely-Limit": "60",
        "X-RateLimit-Minutely-Remaining": str(remaining),
        "X-RateLimit-Minutely-Reset": str(int((now // 60 + 1) * 60 * 1000)),
    }


async def test_two_replicas_spend_one_error_budget_and_the_eleventh_error_is_never_sent(
    replicas, connection_id
):
    clock = Clock()
    first = governor(replicas.first, clock, error_budget=10)
    second = governor(replicas.second, clock, error_budget=10)
    refused = Exact(clock, 404)
    # A 400 recovered by splitting a filter was counted once already: not again.
    await first.call(connection_id, DIVISION, ENDPOINT, Exact(clock, 400).send, count_errors=False)
    for i in range(10):
        replica = first if i % 2 else second
        answer = await replica.call(connection_id, DIVISION, ENDPOINT, refused.send)
        assert answer.status_code == 404
    # Each replica knows the count as of its own last call: the first made the tenth error.
    assert first.errors(connection_id, DIVISION, ENDPOINT) == 10
    assert second.errors(connection_id, DIVISION, ENDPOINT) == 9
    for replica in (first, second):
        with pytest.raises(TransientError) as caught:
            await replica.call(connection_id, DIVISION, ENDPOINT, refused.send)
        assert caught.value.code == "error_budget"
        assert caught.value.retry_after == pytest.approx(3600 - START % 3600)
        assert replica.errors(connection_id, DIVISION, ENDPOINT) == 10
    assert len(refused.sent_at) == 10
    # Another endpoint of the division keeps its own budget.
    accounts = Exact(clock)
    await second.call(connection_id, DIVISION, "crm/Accounts", accounts.send)
    assert len(accounts.sent_at) == 1
    # The next hour starts a new one, for both.
    clock.now += 3600
    await first.call(connection_id, DIVISION, ENDPOINT, refused.send)
    assert len(refused.sent_at) == 11


async def test_a_replica_waits_for_the_minute_another_replica_used_up(replicas, connection_id):
    clock = Clock()
    first = governor(replicas.first, clock, minutely_reserve=2, reset_margin=1.0)
    second = governor(replicas.second, clock, minutely_reserve=2, reset_margin=1.0)
    # The first replica's answer says two calls are left in this minute (the reserve).
    await first.call(
        connection_id, DIVISION, ENDPOINT, Exact(clock, 200, minutely(2, now=START)).send
    )
    exact = Exact(clock, 200, minutely(59, now=START + 51))
    await second.call(connection_id, DIVISION, ENDPOINT, exact.send)
    # 50 s to 12:01:00, plus the margin: the second replica never saw that answer itself.
    assert clock.slept == [51.0]
    assert exact.sent_at == [START + 51.0]
    # Another division is paced on its own windows.
    other = Exact(clock)
    await second.call(connection_id, DIVISION + 1, ENDPOINT, other.send)
    assert clock.slept == [51.0]
    row = await replicas.first.fetchrow(
        "SELECT holder, busy_until, minutely_remaining FROM enricher.rate_limits "
        "WHERE connection_id = $1 AND division = $2",
        connection_id,
        DIVISION,
    )
    assert row["holder"] is None  # the turn was handed back
    assert row["minutely_remaining"] == 59


async def test_a_replica_stops_calling_a_division_whose_day_another_replica_used_up(
    replicas, connection_id
):
    clock = Clock()
    first, second = governor(replicas.first, clock), governor(replicas.second, clock)
    midnight = (START // 86400 + 1) * 86400
    day_used = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(midnight * 1000))}
    with pytest.raises(TransientError):
        await first.call(connection_id, DIVISION, ENDPOINT, Exact(clock, 429, day_used).send)
    exact = Exact(clock)
    with pytest.raises(TransientError) as caught:
        await second.call(connection_id, DIVISION, ENDPOINT, exact.send)
    assert exact.sent_at == []
    assert caught.value.retry_after == pytest.approx(midnight - START)


async def test_a_turn_left_by_a_crashed_replica_runs_out_and_the_division_is_called_again(
    replicas, connection_id
):
    # What a replica that died during its call leaves: a lease nobody will hand back.
    busy_until = await replicas.first.fetchval(
        "INSERT INTO enricher.rate_limits (connection_id, division, busy_until, holder) "
        "VALUES ($1, $2, now() + interval '1 second', $3) RETURNING busy_until",
        connection_id,
        DIVISION,
        uuid4(),
    )
    called_at: list[datetime] = []

    async def send() -> Answer:
        called_at.append(datetime.now(UTC))
        return Answer()

    second = RateGovernor(store=PostgresRateLimits(replicas.second, lease=5.0))
    answer = await second.call(connection_id, DIVISION, ENDPOINT, send)
    assert answer.status_code == 200
    assert len(called_at) == 1
    assert called_at[0] >= busy_until  # not while the crashed replica's lease ran
