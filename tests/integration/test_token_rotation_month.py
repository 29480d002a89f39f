"""A simulated month of token rotation: four token-keeper replicas, many concurrent callers,
idle weeks, against the Exact simulator's token rules on one controlled clock.

Passes when Exact saw zero too-early refreshes, zero reuses of a rotated refresh token, no
broken or expired chain, and every access token handed out worked.
"""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import aio_pika
import httpx
import pytest

from common import db
from common.contracts import AccessToken, TokenGet
from common.crypto import Sealer, generate_key
from common.rpc import RpcClient
from sim_exact.client import SimExactAdmin
from sim_exact.server import running
from sim_exact.settings import Settings as SimSettings
from token_keeper.adapters.exact_oauth import ExactTokenEndpoint
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.app import run as run_token_keeper
from token_keeper.handlers import TokenPolicy, keep_alive
from token_keeper.settings import Settings as KeeperSettings

pytestmark = pytest.mark.integration

REPLICAS = 4
CALLERS = 25
CONNECTION = "month"
DAY = 24 * 3600


class SharedClock:
    """Exact's time and token-keeper's time, moved together."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


async def test_a_month_of_rotation_breaks_no_chain_and_is_never_too_early(
    private_amqp_url: str, private_database_url: str
) -> None:
    rng = random.Random(20261125)
    key = generate_key()
    async with AsyncExitStack() as stack:
        sim = await stack.enter_async_context(running(SimSettings(http_port=0, clock_speed=0)))
        admin = await stack.enter_async_context(SimExactAdmin(sim.url))
        start = (await admin.advance_clock(0))["epoch_ms"]
        clock = SharedClock(datetime.fromtimestamp(start / 1000, UTC))

        async def advance(seconds: float) -> None:
            answer = await admin.advance_clock(seconds)
            clock.now = datetime.fromtimestamp(answer["epoch_ms"] / 1000, UTC)

        stop = asyncio.Event()
        settings = KeeperSettings(
            amqp_url=private_amqp_url,
            database_url=private_database_url,
            secret_key=key,
            http_port=0,
            exact_base_url=sim.url,
            exact_connection_id=CONNECTION,
            token_keeper_housekeeping_seconds=3600,
        )
        replicas = [
            asyncio.create_task(run_token_keeper(settings, stop, clock)) for _ in range(REPLICAS)
        ]

        async def stop_replicas() -> None:
            stop.set()
            await asyncio.gather(*replicas)

        stack.push_async_callback(stop_replicas)
        broker = await stack.enter_async_context(await aio_pika.connect_robust(private_amqp_url))
        rpc = await RpcClient.open(broker, timeout=10)
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=sim.url, timeout=10))
        # One store per replica's worth of pool, so the keep-alive races across connections.
        stores = []
        for _ in range(REPLICAS):
            pool = await stack.enter_async_context(db.pool(private_database_url, max_size=2))
            stores.append(PostgresConnectionStore(pool, Sealer(key)))
        endpoint = ExactTokenEndpoint(await stack.enter_async_context(httpx.AsyncClient()))
        policy = TokenPolicy()

        async def use_token() -> int:
            token = await _token_when_ready(rpc)
            answer = await http.get(
                "/api/v1/current/Me",
                headers={
                    "Authorization": f"Bearer {token.access_token.get_secret_value()}",
                    "Accept": "application/json",
                },
            )
            return answer.status_code

        async def busy_moment() -> None:
            statuses = await asyncio.gather(*(use_token() for _ in range(CALLERS)))
            assert set(statuses) == {200}, statuses

        async def keep_alive_everywhere() -> None:
            await asyncio.gather(
                *(
                    keep_alive(CONNECTION, store=s, endpoint=endpoint, policy=policy, clock=clock)
                    for s in stores
                )
            )

        await _wait_for_replicas(rpc)
        elapsed = 0.0
        # Busy weeks: bursts of callers at irregular gaps around the token's lifetime.
        while elapsed < 14 * DAY:
            gap = rng.choice([5, 30, 200, 560, 575, 590, 600, 601, 1800, 3 * 3600, DAY])
            await advance(gap)
            elapsed += gap
            await busy_moment()
        # Idle weeks: nobody calls; only the keep-alive runs, every few days.
        idle_start = elapsed
        while elapsed - idle_start < 35 * DAY:
            await advance(2.5 * DAY)
            elapsed += 2.5 * DAY
            await keep_alive_everywhere()
        await busy_moment()

        (chain,) = [c for c in (await admin.stats())["token_chains"] if c["refreshes"]]
        assert chain["too_early"] == 0
        assert chain["old_token_reuse"] == 0
        assert not chain["broken"]
        assert not chain["expired"]
        assert elapsed >= 49 * DAY
        # Roughly one refresh per busy moment past the token's life, plus weekly keep-alives.
        assert chain["refreshes"] >= 5
        summaries = await stores[0].summaries()
        assert [s.status for s in summaries] == ["active"]
        assert summaries[0].refresh_count == chain["refreshes"]


async def _token_when_ready(rpc: RpcClient) -> AccessToken:
    return await rpc.call(TokenGet(connection_id=CONNECTION), AccessToken)


async def _wait_for_replicas(rpc: RpcClient) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        try:
            await asyncio.wait_for(_token_when_ready(rpc), 5)
            return
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)
