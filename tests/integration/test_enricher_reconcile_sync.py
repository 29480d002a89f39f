"""Reconciliation against the Exact simulator with its marks in PostgreSQL: sales invoices,
sales orders and purchase orders are caught up through Exact's sync APIs from a row-version
cursor, the other streams by ``Modified``; a quiet pass costs one request per stream, and a
cursor outlives the process that stored it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sim_exact_tokens import SimTokens, sim_access_token

from common import db
from common.contracts import ExactWebhookReceived, Message
from common.testing.infra import unique
from enricher.adapters.exact import ExactClient
from enricher.adapters.watermarks import PostgresWatermarks
from enricher.governor import RateGovernor
from enricher.reconcile import STREAMS, Reconciler
from sim_exact.client import SimExactAdmin
from sim_exact.server import RunningSimulator, running
from sim_exact.settings import Settings

pytestmark = pytest.mark.integration


@dataclass
class Working:
    """token-keeper's answer to ``connections.list``."""

    connections: list[tuple[str, list[int]]]

    async def active(self) -> list[tuple[str, list[int]]]:
        return self.connections


@dataclass
class Rig:
    sim: RunningSimulator
    admin: SimExactAdmin
    http: httpx.AsyncClient
    tokens: SimTokens
    database_url: str
    connection: str
    published: list[Message]

    @property
    def division(self) -> int:
        return self.sim.state.settings.exact_division

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.sim.state.clock.now(), UTC)

    async def advance(self, seconds: float) -> None:
        self.sim.state.clock.advance(seconds)

    def reconciler(self, pool: Any) -> Reconciler:
        """A reconciler as the enricher wires it (one per process start)."""

        async def publish(message: Message) -> None:
            self.published.append(message)

        governor = RateGovernor(clock=self.sim.state.clock.now, sleep=self.advance)
        return Reconciler(
            connections=Working([(self.connection, [self.division])]),
            client_id="c",
            exact=ExactClient(self.http, self.tokens, governor),
            watermarks=PostgresWatermarks(pool),
            publish=publish,
            lookback=timedelta(days=1),
            overlap=timedelta(seconds=300),
        )

    async def calls(self) -> list[dict[str, Any]]:
        return await self.admin.requests(division=self.division)

    def updated(self, topic: str) -> set[str]:
        return {
            str(m.key_id)
            for m in self.published
            if isinstance(m, ExactWebhookReceived) and m.topic == topic
        }


@pytest_asyncio.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    # clock_speed=0 freezes simulated time: only the test (or the governor) moves it
    settings = Settings(http_port=0, clock_speed=0)
    async with (
        running(settings) as sim,
        SimExactAdmin(sim.url) as admin,
        httpx.AsyncClient(base_url=sim.url) as http,
    ):
        token = await sim_access_token(sim.url, settings)
        async with db.pool(database_url) as pool:
            await db.migrate(pool, "enricher", "enricher")
        yield Rig(sim, admin, http, SimTokens(token), database_url, unique("conn"), [])


def synced(calls: list[dict[str, Any]], feed: str) -> list[dict[str, Any]]:
    return [c for c in calls if c["path"].endswith(f"/sync/{feed}")]


def started(calls: list[dict[str, Any]], endpoint: str) -> list[dict[str, Any]]:
    """``SyncTimestamp`` requests for ``endpoint`` (a stream without a cursor yet)."""
    return [
        c
        for c in calls
        if c["path"].endswith("/SyncTimestamp") and c["query"].get("endPoint") == f"'{endpoint}'"
    ]


def by_modified(calls: list[dict[str, Any]], resource: str) -> list[dict[str, Any]]:
    return [
        c
        for c in calls
        if c["path"].endswith(f"/{resource}") and "Modified" in c["query"].get("$filter", "")
    ]


async def test_an_order_changed_while_no_webhook_came_is_found_by_the_next_pass_through_sync(rig):
    # nobody is subscribed in this simulator: every change below is a "missed webhook"
    order = await rig.admin.create("SalesOrders", Description="big export order")
    purchase = await rig.admin.create("PurchaseOrders", Description="steel")
    async with db.pool(rig.database_url) as pool:
        reconciler = rig.reconciler(pool)
        assert await reconciler.run_once(rig.now()) >= 2
        assert order["OrderID"] in rig.updated("SalesOrders")
        assert purchase["PurchaseOrderID"] in rig.updated("PurchaseOrders")

        await rig.advance(60)
        await rig.admin.update("SalesOrders", order["OrderID"], Description="confirmed")
        rig.published.clear()
        before = len(await rig.calls())
        assert await reconciler.run_once(rig.now()) == 1
        assert rig.updated("SalesOrders") == {order["OrderID"]}
        calls = (await rig.calls())[before:]
    # found through the sync API, from the cursor; never by Modified, never SyncTimestamp again
    (feed,) = synced(calls, "SalesOrder/SalesOrderHeaders")
    assert feed["query"]["$filter"].startswith("Timestamp gt ")
    assert by_modified(calls, "salesorder/SalesOrders") == []
    assert started(calls, "SalesOrderHeaders") == []


async def test_a_second_pass_with_no_change_costs_one_request_per_stream_and_publishes_nothing(
    rig,
):
    invoice = await rig.admin.create_invoice(amount=121.0)
    await rig.admin.issue_invoice(invoice["InvoiceID"])
    async with db.pool(rig.database_url) as pool:
        reconciler = rig.reconciler(pool)
        assert await reconciler.run_once(rig.now()) >= 1
        assert invoice["InvoiceID"] in rig.updated("SalesInvoices")
        rig.published.clear()
        before = len(await rig.calls())
        await rig.advance(300)
        assert await reconciler.run_once(rig.now()) == 0
        calls = (await rig.calls())[before:]
    assert rig.published == []
    assert len(calls) == len(STREAMS)
    assert len(synced(calls, "SalesInvoice/SalesInvoices")) == 1


async def test_a_cursor_survives_a_restart(rig):
    invoice = await rig.admin.create_invoice(amount=50.0)
    async with db.pool(rig.database_url) as pool:
        assert await rig.reconciler(pool).run_once(rig.now()) >= 1
    before = len(await rig.calls())
    (first,) = synced(await rig.calls(), "SalesInvoice/SalesInvoices")

    # a new process: its own pool, its own reconciler, nothing in memory
    await rig.advance(60)
    await rig.admin.edit_invoice(invoice["InvoiceID"], Description="credit terms changed")
    rig.published.clear()
    async with db.pool(rig.database_url) as pool:
        assert await rig.reconciler(pool).run_once(rig.now()) == 1
    calls = (await rig.calls())[before:]
    assert rig.updated("SalesInvoices") == {invoice["InvoiceID"]}
    assert started(calls, "SalesInvoices") == []
    (again,) = synced(calls, "SalesInvoice/SalesInvoices")
    after = int(again["query"]["$filter"].removeprefix("Timestamp gt "))
    assert after > int(first["query"]["$filter"].removeprefix("Timestamp gt "))


async def test_a_stream_without_a_sync_api_is_still_read_by_modified(rig):
    entry = await rig.admin.create("SalesEntries", Description="direct sale")
    async with db.pool(rig.database_url) as pool:
        await rig.reconciler(pool).run_once(rig.now())
    calls = await rig.calls()
    assert entry["EntryID"] in rig.updated("SalesEntries")
    assert len(by_modified(calls, "salesentry/SalesEntries")) == 1
    assert [c for c in calls if "/sync/" in c["path"] and "SalesEntries" in c["path"]] == []
    # and the synced streams were not read by Modified
    assert by_modified(calls, "salesinvoice/SalesInvoices") == []
