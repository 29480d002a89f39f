"""token-keeper's handlers with fake ports: one refresh however many callers, and the rotated
pair stored before the access token is handed out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from common.contracts import TokenGet, TokenRefresh
from common.errors import TransientError
from token_keeper.adapters.exact_oauth import ChainBroken
from token_keeper.adapters.store import fingerprint
from token_keeper.handlers import TokenPolicy, get_token, keep_alive, refresh_token
from token_keeper.ports import Connection, TokenPair

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLICY = TokenPolicy()
LATER = NOW + timedelta(seconds=POLICY.min_interval + 5)


class FakeStore:
    def __init__(self, row: Connection) -> None:
        self.row: Connection | None = row
        self.lock = asyncio.Lock()

    async def get(self, connection_id: str) -> Connection | None:
        return self.row

    @asynccontextmanager
    async def refresh_lock(self, connection_id: str) -> AsyncIterator[FakeStore]:
        async with self.lock:
            yield self

    async def save(self, pair: TokenPair, now: datetime) -> Connection:
        assert self.row is not None
        self.row = replace(
            self.row,
            refresh_token=pair.refresh_token,
            access_token=pair.access_token,
            access_fingerprint=fingerprint(pair.access_token),
            access_expires_at=now + timedelta(seconds=pair.expires_in),
            refreshed_at=now,
        )
        return self.row

    async def mark_needs_reconnect(self, connection_id: str, reason: str) -> None:
        assert self.row is not None
        self.row = replace(self.row, status="needs_reconnect")


class FakeEndpoint:
    def __init__(self, store: FakeStore, error: Exception | None = None) -> None:
        self.store, self.error, self.calls = store, error, 0
        self.used: list[str] = []

    async def refresh(self, connection: Connection) -> TokenPair:
        self.calls += 1
        self.used.append(connection.refresh_token)
        await asyncio.sleep(0)  # let other callers pile up on the lock
        if self.error:
            raise self.error
        return TokenPair(f"access-{self.calls}", f"refresh-{self.calls}", 600)


def connection(**changes: object) -> Connection:
    base = Connection(
        id="default",
        base_url="http://exact",
        client_id="c",
        client_secret="s",
        webhook_secret="w",
        division=1,
        refresh_token="refresh-0",
        access_token=None,
        access_fingerprint=None,
        access_expires_at=None,
        refreshed_at=None,
        status="active",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_a_hundred_concurrent_callers_cause_one_refresh():
    store = FakeStore(connection())
    endpoint = FakeEndpoint(store)
    replies = await asyncio.gather(
        *(
            get_token(
                TokenGet(connection_id="default"),
                store=store,
                endpoint=endpoint,
                policy=POLICY,
                clock=lambda: NOW,
            )
            for _ in range(100)
        )
    )
    assert endpoint.calls == 1
    assert {r.access_token.get_secret_value() for r in replies} == {"access-1"}
    assert store.row is not None
    assert store.row.refresh_token == "refresh-1"


async def test_a_fresh_token_is_handed_out_without_refreshing_and_a_stale_one_is_refreshed():
    row = connection(
        access_token="a",
        access_fingerprint=fingerprint("a"),
        access_expires_at=NOW + timedelta(seconds=300),
        refreshed_at=NOW,
    )
    store = FakeStore(row)
    endpoint = FakeEndpoint(store)
    reply = await get_token(
        TokenGet(connection_id="default"),
        store=store,
        endpoint=endpoint,
        policy=POLICY,
        clock=lambda: NOW,
    )
    assert reply.access_token.get_secret_value() == "a"
    assert endpoint.calls == 0
    later = NOW + timedelta(seconds=580)
    reply = await get_token(
        TokenGet(connection_id="default"),
        store=store,
        endpoint=endpoint,
        policy=POLICY,
        clock=lambda: later,
    )
    assert reply.access_token.get_secret_value() == "access-1"
    assert endpoint.used == ["refresh-0"]


async def test_refresh_after_a_401_happens_once_per_refused_token():
    row = connection(
        access_token="a",
        access_fingerprint=fingerprint("a"),
        access_expires_at=NOW + timedelta(seconds=300),
        refreshed_at=NOW,
    )
    store = FakeStore(row)
    endpoint = FakeEndpoint(store)
    request = TokenRefresh(connection_id="default", fingerprint=fingerprint("a"))
    replies = await asyncio.gather(
        *(
            refresh_token(
                request, store=store, endpoint=endpoint, policy=POLICY, clock=lambda: LATER
            )
            for _ in range(50)
        )
    )
    assert endpoint.calls == 1
    assert {r.fingerprint for r in replies} == {fingerprint("access-1")}


async def test_a_broken_chain_marks_the_connection_and_its_work_waits():
    store = FakeStore(connection())
    endpoint = FakeEndpoint(store, ChainBroken("Old refresh token used.", code="needs_reconnect"))
    with pytest.raises(ChainBroken):
        await get_token(
            TokenGet(connection_id="default"),
            store=store,
            endpoint=endpoint,
            policy=POLICY,
            clock=lambda: NOW,
        )
    assert store.row is not None
    assert store.row.status == "needs_reconnect"
    with pytest.raises(TransientError):
        await get_token(
            TokenGet(connection_id="default"),
            store=store,
            endpoint=endpoint,
            policy=POLICY,
            clock=lambda: NOW,
        )
    assert endpoint.calls == 1


async def test_a_refresh_sooner_than_the_minimum_interval_never_reaches_exact():
    row = connection(
        access_token="a",
        access_fingerprint=fingerprint("a"),
        access_expires_at=NOW + timedelta(seconds=600),
        refreshed_at=NOW,
    )
    store = FakeStore(row)
    endpoint = FakeEndpoint(store)
    request = TokenRefresh(connection_id="default", fingerprint=fingerprint("a"))
    soon = NOW + timedelta(seconds=60)
    with pytest.raises(TransientError) as raised:
        await refresh_token(
            request, store=store, endpoint=endpoint, policy=POLICY, clock=lambda: soon
        )
    assert endpoint.calls == 0
    assert raised.value.retry_after == pytest.approx(POLICY.min_interval - 60)


async def test_keep_alive_refreshes_only_idle_connections():
    row = connection(
        access_token="a",
        access_fingerprint=fingerprint("a"),
        access_expires_at=NOW + timedelta(seconds=600),
        refreshed_at=NOW,
    )
    store = FakeStore(row)
    endpoint = FakeEndpoint(store)
    day = timedelta(days=1)
    assert not await keep_alive(
        "default", store=store, endpoint=endpoint, policy=POLICY, clock=lambda: NOW + day
    )
    idle = NOW + timedelta(seconds=POLICY.keepalive_after)
    assert await keep_alive(
        "default", store=store, endpoint=endpoint, policy=POLICY, clock=lambda: idle
    )
    assert endpoint.used == ["refresh-0"]
    assert store.row is not None
    assert store.row.refreshed_at == idle


async def test_exact_refusing_a_refresh_as_too_early_hands_out_the_still_valid_token():
    issued = NOW - timedelta(seconds=POLICY.min_interval + 1)  # our floor has passed
    row = connection(
        access_token="a",
        access_fingerprint=fingerprint("a"),
        access_expires_at=NOW + timedelta(seconds=20),  # about to be refreshed, still valid
        refreshed_at=issued,
    )
    store = FakeStore(row)
    endpoint = FakeEndpoint(store, TransientError("too early", code="too_early", retry_after=30))
    reply = await get_token(
        TokenGet(connection_id="default"), store=store, endpoint=endpoint, policy=POLICY,
        clock=lambda: NOW,
    )  # fmt: skip
    assert endpoint.calls == 1
    assert reply.access_token.get_secret_value() == "a"


async def test_too_early_with_an_expired_token_is_still_an_error_to_retry():
    row = connection(
        access_token="a",
        access_fingerprint=fingerprint("a"),
        access_expires_at=NOW - timedelta(seconds=1),
        refreshed_at=NOW - timedelta(seconds=POLICY.min_interval + 1),
    )
    store = FakeStore(row)
    endpoint = FakeEndpoint(store, TransientError("too early", code="too_early", retry_after=30))
    with pytest.raises(TransientError):
        await get_token(
            TokenGet(connection_id="default"), store=store, endpoint=endpoint, policy=POLICY,
            clock=lambda: NOW,
        )  # fmt: skip
