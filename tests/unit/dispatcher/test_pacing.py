"""Pacer: per-account concurrency and token-bucket rate, on a clock the test moves."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from dispatcher.adapters.pacing import Pacer
from dispatcher.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.002)


async def _take(pacer: Pacer, account: str, taken: list[str], hold: asyncio.Event | None = None):
    async with pacer.turn(account, "twilio"):
        taken.append(account)
        if hold is not None:
            await hold.wait()


async def test_a_burst_passes_at_once_and_the_next_request_waits_for_its_token():
    clock = Clock()
    pacer = Pacer(rate=1000.0, burst=3, concurrency=100, clock=clock)
    taken: list[str] = []
    tasks = [asyncio.create_task(_take(pacer, "AC1", taken)) for _ in range(5)]
    await _settle()
    assert len(taken) == 3  # the burst; time has not moved, so no token came back
    clock.now += 0.001  # one token's worth
    await _settle()
    assert len(taken) == 4
    clock.now += 0.001
    await _settle()
    assert len(taken) == 5
    await asyncio.gather(*tasks)


async def test_each_account_has_its_own_bucket():
    clock = Clock()
    pacer = Pacer(rate=1000.0, burst=1, concurrency=100, clock=clock)
    taken: list[str] = []
    tasks = [asyncio.create_task(_take(pacer, a, taken)) for a in ("AC1", "AC1", "AC2")]
    await _settle()
    assert sorted(taken) == ["AC1", "AC2"]  # AC1's second request waits, AC2 does not
    clock.now += 0.001
    await asyncio.gather(*tasks)
    assert sorted(taken) == ["AC1", "AC1", "AC2"]


async def test_no_more_than_the_concurrency_are_in_flight_per_account():
    pacer = Pacer(concurrency=2)
    hold = asyncio.Event()
    taken: list[str] = []
    tasks = [asyncio.create_task(_take(pacer, "AC1", taken, hold)) for _ in range(4)]
    other = asyncio.create_task(_take(pacer, "AC2", taken, hold))
    await _settle()
    assert taken.count("AC1") == 2
    assert taken.count("AC2") == 1
    hold.set()
    await asyncio.gather(*tasks, other)
    assert taken.count("AC1") == 4


async def test_without_a_rate_only_the_concurrency_limits():
    pacer = Pacer(rate=0.0, concurrency=100, clock=Clock())
    taken: list[str] = []
    await asyncio.gather(*(_take(pacer, "AC1", taken) for _ in range(50)))
    assert len(taken) == 50


def test_a_rate_that_would_let_claims_go_stale_is_refused_at_start():
    with pytest.raises(ValidationError) as refused:
        Settings(dispatcher_twilio_rate=1.0, dispatcher_prefetch=200)
    assert "MLC_DISPATCHER_TWILIO_RATE" in str(refused.value)
    paced = Settings(dispatcher_twilio_rate=50.0, dispatcher_prefetch=200)
    assert paced.dispatcher_twilio_rate == 50.0
