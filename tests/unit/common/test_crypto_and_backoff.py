"""Sealing with key rotation, and the retry policy's shape."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import topology
from common.backoff import next_tier
from common.crypto import InvalidToken, Sealer, generate_key


def test_sealed_secrets_open_with_the_key_and_survive_a_key_rotation():
    old, new = generate_key(), generate_key()
    sealed = Sealer(old).seal("refresh-token-value")
    assert b"refresh-token-value" not in sealed
    rotated = Sealer(f"{new},{old}")
    assert rotated.open(sealed) == "refresh-token-value"
    resealed = rotated.rotate(sealed)
    assert Sealer(new).open(resealed) == "refresh-token-value"
    with pytest.raises(InvalidToken):
        Sealer(new).open(sealed)


@given(st.integers(min_value=1, max_value=len(topology.RETRY_TIERS) - 1))
def test_backoff_grows_with_the_attempt_and_ends_in_the_dlq(attempt):
    first, second = next_tier(attempt), next_tier(attempt + 1)
    assert first is not None
    assert second is not None
    assert first < second
    assert next_tier(len(topology.RETRY_TIERS) + 1) is None


def test_a_retry_after_hint_moves_the_retry_to_a_long_enough_tier():
    assert next_tier(1, retry_after=42) == 300
    assert next_tier(1, retry_after=1) == topology.RETRY_TIERS[0]


def test_derived_queue_names_follow_the_convention():
    assert topology.retry_queue_name("dispatcher.sends", 30) == "dispatcher.sends.retry.30s"
    assert topology.retry_queue_name("dispatcher.sends", 300) == "dispatcher.sends.retry.5m"
    assert topology.dlq_name("dispatcher.sends") == "dispatcher.sends.dlq"
    names = {q["name"] for q in topology.definitions()["queues"]}
    assert {
        "enricher.exact-events",
        "enricher.exact-events.dlq",
        "auditor.events.retry.30m",
    } <= names


def test_work_that_waits_indefinitely_never_reaches_the_dlq():
    last = topology.RETRY_TIERS[-1]
    assert next_tier(len(topology.RETRY_TIERS) + 5, indefinite=True) == last
    assert next_tier(1, indefinite=True) == topology.RETRY_TIERS[0]
