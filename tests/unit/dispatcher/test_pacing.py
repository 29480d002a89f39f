"""Pacer: per-account concurrency and token-bucket rate, on a clock the test moves."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from common.errors import TransientError
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


async def test_a_request_that_finds_no_slot_in_time_is_refused_as_transient_and_frees_nothing():
    pacer = Pacer(concurrency=1, max_wait=0.05)
    hold = asyncio.Event()
    taken: list[str] = []
    holder = asyncio.create_task(_take(pacer, "AC1", taken, hold))
    await _settle()
    with pytest.raises(TransientError) as refused:
        await _take(pacer, "AC1", taken)
    assert "not sent" in str(refused.value)
    assert taken == ["AC1"]  # the late request never ran
    hold.set()
    await holder
    # the refused waiter gave back nothing it did not hold: one slot, still usable once
    await _take(pacer, "AC1", taken)
    blocked = asyncio.create_task(_take(pacer, "AC1", taken, asyncio.Event()))
    await _settle()
    assert taken == ["AC1", "AC1", "AC1"]
    with pytest.raises(TransientError):
        await _take(pacer, "AC1", taken)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked


async def test_a_request_waiting_for_a_rate_token_past_the_limit_gives_its_slot_back():
    clock = Clock()  # never moves: no token comes back
    pacer = Pacer(rate=1.0, burst=1, concurrency=1, max_wait=0.05, clock=clock)
    taken: list[str] = []
    await _take(pacer, "AC1", taken)  # spends the only token
    with pytest.raises(TransientError):
        await _take(pacer, "AC1", taken)
    clock.now += 1.0  # a token is back, and so must be the slot
    await asyncio.wait_for(_take(pacer, "AC1", taken), 1.0)
    assert taken == ["AC1", "AC1"]


def test_the_wait_for_a_slot_ends_with_time_for_the_request_before_half_the_stale_time():
    settings = Settings()
    timeouts = settings.dispatcher_connect_timeout + settings.dispatcher_read_timeout
    assert settings.pacing_max_wait > 0
    assert settings.pacing_max_wait + timeouts <= settings.dispatcher_claim_stale_seconds / 2
    with pytest.raises(ValidationError) as refused:
        Settings(dispatcher_claim_stale_seconds=40.0)
    assert "MLC_DISPATCHER_CLAIM_STALE_SECONDS" in str(refused.value)
