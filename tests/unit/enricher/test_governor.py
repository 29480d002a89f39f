"""RateGovernor's rules on a fake clock: pacing on the minutely headers, 429s waited out and
retried, the hourly error budget, serialised calls per division, metrics. Nothing waits: the
injected ``sleep`` only moves the fake clock."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import pytest

from common.errors import TransientError
from common.metrics import make_registry
from enricher.governor import ExactMetrics, RateGovernor

# 2026-11-25 12:00:10 UTC: ten seconds into a calendar minute, an hour boundary 59:50 away
START = 1_795_608_010.0
ENDPOINT = "salesinvoice/SalesInvoices"


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


def limits(minutely: int | None = None, daily: int | None = None, *, now: float) -> dict:
    """Exact's headers: resets at the next minute / next UTC midnight, in epoch ms."""
    headers: dict[str, str] = {}
    if minutely is not None:
        headers["X-RateLimit-Minutely-Limit"] = "60"
        headers["X-RateLimit-Minutely-Remaining"] = str(minutely)
        headers["X-RateLimit-Minutely-Reset"] = str(int((now // 60 + 1) * 60 * 1000))
    if daily is not None:
        headers["X-RateLimit-Limit"] = "5000"
        headers["X-RateLimit-Remaining"] = str(daily)
        headers["X-RateLimit-Reset"] = str(int((now // 86400 + 1) * 86400 * 1000))
    return headers


class Exact:
    """A scripted sequence of answers; records when each request was sent."""

    def __init__(self, clock: Clock, *answers: Answer) -> None:
        self.clock = clock
        self.answers = list(answers)
        self.sent_at: list[float] = []

    async def send(self) -> Answer:
        self.sent_at.append(self.clock.now)
        return self.answers.pop(0) if self.answers else Answer()


def governor(clock: Clock, **kwargs) -> RateGovernor:  # type: ignore[no-untyped-def]
    return RateGovernor(clock=clock, sleep=clock.sleep, **kwargs)


async def call(gov: RateGovernor, exact: Exact, endpoint: str = ENDPOINT, division: int = 1):  # type: ignore[no-untyped-def]
    return await gov.call("default", division, endpoint, exact.send)


async def test_calls_go_straight_through_while_the_minute_has_room():
    clock = Clock()
    # ten seconds into the minute, ten calls spent: within the burst and the even pace
    exact = Exact(clock, Answer(headers=limits(50, 4000, now=START)), Answer())
    gov = governor(clock)
    assert (await call(gov, exact)).status_code == 200
    assert (await call(gov, exact)).status_code == 200
    assert clock.slept == []


async def test_down_to_the_reserve_the_next_call_waits_for_the_minute_to_reset():
    clock = Clock()
    exact = Exact(clock, Answer(headers=limits(2, 4000, now=START)), Answer())
    gov = governor(clock, minutely_reserve=2, reset_margin=1.0)
    await call(gov, exact)
    await call(gov, exact)
    # 50 s to 12:01:00, plus the margin for clock skew
    assert clock.slept == [51.0]
    assert exact.sent_at == [START, START + 51.0]


async def test_a_reset_already_past_means_a_new_window():
    clock = Clock()
    exact = Exact(clock, Answer(headers=limits(0, now=START)), Answer())
    gov = governor(clock)
    await call(gov, exact)
    clock.now += 60
    await call(gov, exact)
    assert clock.slept == []


async def test_missing_rate_limit_headers_are_tolerated():
    clock = Clock()
    exact = Exact(clock, Answer(headers={"X-RateLimit-Minutely-Remaining": "soon"}), Answer())
    gov = governor(clock)
    await call(gov, exact)
    await call(gov, exact)
    assert clock.slept == []


async def test_a_429_is_waited_out_until_the_reset_and_retried_without_counting_an_error():
    clock = Clock()
    exact = Exact(
        clock, Answer(429, limits(0, now=START)), Answer(200, limits(59, 4000, now=START))
    )
    registry = make_registry()
    gov = governor(clock, metrics=ExactMetrics.create(registry))
    answer = await call(gov, exact)
    assert answer.status_code == 200
    assert clock.slept == [51.0]
    assert gov.errors("default", 1, ENDPOINT) == 0

    def requests(status: str) -> float | None:
        return registry.get_sample_value(
            "mlc_exact_requests_total", {"endpoint": ENDPOINT, "status": status}
        )

    assert (requests("429"), requests("200")) == (1.0, 1.0)
    labels = {"connection": "default", "window": "minutely"}
    assert registry.get_sample_value("mlc_exact_ratelimit_remaining", labels) == 59
    daily = {"connection": "default", "window": "daily"}
    assert registry.get_sample_value("mlc_exact_ratelimit_remaining", daily) == 4000


async def test_a_429_without_headers_waits_for_the_next_calendar_minute():
    clock = Clock()
    exact = Exact(clock, Answer(429), Answer())
    gov = governor(clock, reset_margin=1.0)
    await call(gov, exact)
    assert clock.slept == [51.0]


async def test_429s_beyond_the_retries_become_a_transient_error_with_the_reset():
    clock = Clock()
    exact = Exact(clock, *[Answer(429, limits(0, now=START + 60 * i)) for i in range(3)])
    gov = governor(clock, rate_limit_retries=2)
    with pytest.raises(TransientError) as caught:
        await call(gov, exact)
    assert len(exact.sent_at) == 3
    assert caught.value.code == 429
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 61


async def test_an_exhausted_day_is_not_waited_out_in_process_and_stops_further_calls():
    clock = Clock()
    exact = Exact(clock, Answer(429, limits(daily=0, now=START)))
    gov = governor(clock)
    with pytest.raises(TransientError) as caught:
        await call(gov, exact)
    until_midnight = (START // 86400 + 1) * 86400 - START
    assert caught.value.retry_after == pytest.approx(until_midnight + 1.0)
    with pytest.raises(TransientError):
        await call(gov, exact)
    assert len(exact.sent_at) == 1  # the second call never left
    assert clock.slept == []


async def test_past_the_error_budget_an_endpoint_is_not_called_until_the_hour_ends():
    clock = Clock()
    exact = Exact(clock, *[Answer(404) for _ in range(8)])
    gov = governor(clock, error_budget=8)
    for _ in range(8):
        assert (await call(gov, exact)).status_code == 404
    with pytest.raises(TransientError) as caught:
        await call(gov, exact)
    assert len(exact.sent_at) == 8
    assert caught.value.code == "error_budget"
    assert caught.value.retry_after == pytest.approx(3600 - (START % 3600))
    # other endpoints of the division are not affected
    assert (await call(gov, exact, endpoint="crm/Accounts")).status_code == 200
    # the next hour starts a new budget
    clock.now += caught.value.retry_after
    assert (await call(gov, exact)).status_code == 200


async def test_a_429_and_5xx_do_not_use_the_error_budget():
    clock = Clock()
    exact = Exact(clock, Answer(500), Answer(503), Answer(429), Answer(), Answer(400))
    gov = governor(clock)
    await call(gov, exact)
    await call(gov, exact)
    await call(gov, exact)
    await call(gov, exact)
    assert gov.errors("default", 1, ENDPOINT) == 1


async def test_calls_to_one_division_never_overlap_and_other_divisions_do_not_wait():
    clock = Clock()
    gov = governor(clock)
    release = asyncio.Event()
    in_flight: dict[int, int] = {1: 0, 2: 0}
    most: dict[int, int] = {1: 0, 2: 0}

    def sender(division: int):  # type: ignore[no-untyped-def]
        async def send() -> Answer:
            in_flight[division] += 1
            most[division] = max(most[division], in_flight[division])
            await release.wait()
            in_flight[division] -= 1
            return Answer()

        return send

    calls = [
        asyncio.create_task(gov.call("default", division, ENDPOINT, sender(division)))
        for division in (1, 1, 1, 2)
    ]
    for _ in range(10):
        await asyncio.sleep(0)  # a scheduler turn, not a timed wait
    assert in_flight == {1: 1, 2: 1}
    release.set()
    await asyncio.gather(*calls)
    assert most == {1: 1, 2: 1}


async def test_a_network_error_is_counted_and_passed_on():
    clock = Clock()
    registry = make_registry()
    gov = governor(clock, metrics=ExactMetrics.create(registry))

    async def unreachable() -> Answer:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):
        await gov.call("default", 1, ENDPOINT, unreachable)
    labels = {"endpoint": ENDPOINT, "status": "unreachable"}
    assert registry.get_sample_value("mlc_exact_requests_total", labels) == 1.0


async def test_past_the_burst_the_rest_of_the_minute_is_spread_evenly_until_its_reset():
    clock = Clock()
    clock.now = START - 10  # 12:00:00, a whole minute ahead, Exact's 60 calls in it
    remaining = iter(range(59, -1, -1))
    gov = governor(clock, minutely_reserve=2, minutely_burst=10, reset_margin=1.0)

    class Minute(Exact):
        async def send(self) -> Answer:
            self.sent_at.append(self.clock.now)
            return Answer(headers=limits(next(remaining), now=self.clock.now))

    exact = Minute(clock)
    for _ in range(58):  # every call of the minute but the reserve
        await call(gov, exact)
    offsets = [t - exact.sent_at[0] for t in exact.sent_at]
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert offsets[9] == 0  # the burst of 10 went at once
    # then the other 48 evenly over the rest of the minute, the last at its reset
    assert all(1.2 < gap < 1.3 for gap in gaps[10:])
    assert 59.9 < offsets[-1] <= 60.0 + 1e-6
    assert not any(s > 1.3 for s in clock.slept)  # never a wait for the reset itself


async def test_a_window_with_room_is_not_spread_when_its_reset_is_near():
    clock = Clock()
    clock.now = START + 40  # 12:00:50, ten seconds to the reset
    exact = Exact(clock, *(Answer(headers=limits(30, now=clock.now)) for _ in range(3)))
    gov = governor(clock, minutely_reserve=2, minutely_burst=0)
    for _ in range(3):
        await call(gov, exact)
    assert clock.slept == []  # 28 calls usable in 10 s: no need to hold any back
