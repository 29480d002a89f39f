"""The enricher's Exact adapter (ExactClient + RateGovernor + BatchingExactReader) talking HTTP
to an in-process Exact simulator: coalesced reads, URL splitting, ``__next`` paging, 429s waited
out, the error budget, a refused token refreshed once, and pacing that never meets a 429."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
import pytest_asyncio
from sim_exact_tokens import SimTokens, sim_access_token

from common.contracts import ExactWebhookReceived, Message, PaymentReceived
from common.errors import PermanentError, TransientError
from common.metrics import make_registry
from enricher.adapters.exact import ExactClient
from enricher.batching import BatchingExactReader
from enricher.governor import ExactMetrics, RateGovernor
from enricher.reconcile import Reconciler
from enricher.sync import SyncReader
from sim_exact.client import SimExactAdmin
from sim_exact.server import RunningSimulator, running
from sim_exact.settings import Settings

pytestmark = pytest.mark.integration

INVOICES = "salesinvoice/SalesInvoices"


@dataclass
class Exact:
    sim: RunningSimulator
    admin: SimExactAdmin
    tokens: SimTokens
    urls: list[str] = field(default_factory=list)
    slept: list[float] = field(default_factory=list)
    governor: RateGovernor | None = None

    @property
    def division(self) -> int:
        return self.sim.state.settings.exact_division

    async def advance(self, seconds: float) -> None:
        """The governor's sleep: moves the simulated clock instead of waiting."""
        self.slept.append(seconds)
        self.sim.state.clock.advance(seconds)

    def client(
        self, http: httpx.AsyncClient, *, max_terms: int = 15, **governor: Any
    ) -> ExactClient:
        self.governor = RateGovernor(clock=self.sim.state.clock.now, sleep=self.advance, **governor)
        return ExactClient(http, self.tokens, self.governor, max_terms=max_terms)


@pytest_asyncio.fixture
async def exact() -> AsyncIterator[Exact]:
    # clock_speed=0 freezes simulated time: only the governor's "sleep" moves it
    settings = Settings(http_port=0, clock_speed=0, minutely_limit=60)
    async with running(settings) as sim, SimExactAdmin(sim.url) as admin:
        token = await sim_access_token(sim.url, settings)
        yield Exact(sim, admin, SimTokens(token))


@pytest_asyncio.fixture
async def http(exact: Exact) -> AsyncIterator[httpx.AsyncClient]:
    async def record(request: httpx.Request) -> None:
        exact.urls.append(str(request.url))

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        yield client


async def invoices(exact: Exact, count: int) -> list[str]:
    created = [await exact.admin.create_invoice(amount=10.0 + i) for i in range(count)]
    return [invoice["InvoiceID"] for invoice in created]


async def test_150_concurrent_reads_cost_one_request_per_15_keys_of_each_60_key_batch(exact, http):
    ids = await invoices(exact, 150)
    reader = BatchingExactReader(exact.client(http), window=0.05, max_batch=60)
    gone = [uuid4() for _ in range(5)]
    keys = [UUID(i) for i in ids] + gone
    found = await asyncio.gather(
        *(
            reader.get_one("default", exact.division, INVOICES, "InvoiceID", k, ["Status"])
            for k in keys
        )
    )
    await reader.aclose()

    assert [row["InvoiceID"] for row in found[:150]] == ids
    assert all(row["Status"] == 10 for row in found[:150])
    assert found[150:] == [None] * 5
    calls = await exact.admin.requests(path_contains="SalesInvoices")
    assert len(calls) == 4 + 4 + 3  # batches of 60, 60 and 35 keys, 15 terms a filter
    assert all(call["status"] == 200 for call in calls)


async def test_keys_beyond_one_url_are_split_below_6000_characters(exact, http):
    ids = await invoices(exact, 150)
    keys = [UUID(i) for i in ids] + [uuid4() for _ in range(150)]
    rows = await exact.client(http, max_terms=1000).get_where_in(
        "default", exact.division, INVOICES, "InvoiceID", keys, ["InvoiceID"]
    )

    assert sorted(row["InvoiceID"] for row in rows) == sorted(ids)
    assert len(exact.urls) >= 4
    assert max(len(url) for url in exact.urls) <= 6000


async def test_more_rows_than_a_page_are_followed_through_next(exact, http):
    account = await exact.admin.create_account(Name="Groothandel", Country="NL")
    for i in range(70):
        await exact.admin.create_contact(Account=account["ID"], FirstName=f"C{i}")
    rows = await exact.client(http).get_where_in(
        "default", exact.division, "crm/Contacts", "Account", [UUID(account["ID"])], ["ID"]
    )
    assert len(rows) == 70
    assert len(exact.urls) == 2
    assert "skiptoken" in exact.urls[1]


async def test_a_filter_refused_for_its_size_is_split_and_counts_once_against_the_budget(
    exact, http
):
    # the simulator refuses trees past 100 nodes: 25 terms pass, 26 do not
    ids = await invoices(exact, 60)
    client = exact.client(http, max_terms=60)
    rows = await client.get_where_in(
        "default", exact.division, INVOICES, "InvoiceID", [UUID(i) for i in ids], ["InvoiceID"]
    )

    assert sorted(row["InvoiceID"] for row in rows) == sorted(ids)
    terms = [url.count("+or+") + url.count("%20or%20") + 1 for url in exact.urls]
    statuses = [c["status"] for c in await exact.admin.requests(path_contains="SalesInvoices")]
    # 60 refused; one key alone passes (the size is the problem); 59 -> 30 refused; 15s pass
    assert list(zip(terms, statuses, strict=True)) == [
        (60, 400), (1, 200), (30, 400), (15, 200), (15, 200), (15, 200), (14, 200)
    ]  # fmt: skip
    assert client.max_terms(INVOICES) == 15
    assert exact.governor is not None
    assert exact.governor.errors("default", exact.division, INVOICES) == 1

    # the ceiling holds: the next read of as many keys is refused no more
    exact.urls.clear()
    await client.get_where_in(
        "default", exact.division, INVOICES, "InvoiceID", [UUID(i) for i in ids], ["InvoiceID"]
    )
    statuses = [c["status"] for c in await exact.admin.requests(path_contains="SalesInvoices")]
    assert statuses[7:] == [200, 200, 200, 200]
    assert exact.governor.errors("default", exact.division, INVOICES) == 1


async def test_a_400_that_one_key_alone_also_gets_is_not_split_further(exact, http):
    ids = await invoices(exact, 10)
    client = exact.client(http, max_terms=10)
    with pytest.raises(PermanentError) as caught:
        await client.get_where_in(
            "default", exact.division, INVOICES, "InvoiceID", [UUID(i) for i in ids], ["Nope"]
        )

    assert caught.value.code == 400
    statuses = [c["status"] for c in await exact.admin.requests(path_contains="SalesInvoices")]
    assert statuses == [400, 400]  # the batch, then one key alone: no halving ladder
    assert client.max_terms(INVOICES) == 10
    assert exact.governor is not None
    assert exact.governor.errors("default", exact.division, INVOICES) == 1


async def test_a_429_is_waited_out_until_the_reset_and_the_read_succeeds(exact, http):
    ids = await invoices(exact, 2)
    await exact.admin.inject(kind="http_429", count=1, path_contains="SalesInvoices")
    registry = make_registry()
    client = exact.client(http, metrics=ExactMetrics.create(registry))
    rows = await client.get_where_in(
        "default", exact.division, INVOICES, "InvoiceID", [UUID(i) for i in ids], ["InvoiceID"]
    )

    assert len(rows) == 2
    assert [c["status"] for c in await exact.admin.requests(path_contains="SalesInvoices")] == [
        429,
        200,
    ]
    assert len(exact.slept) == 1
    assert 0 < exact.slept[0] <= 61
    for status in ("429", "200"):
        labels = {"endpoint": INVOICES, "status": status}
        assert registry.get_sample_value("mlc_exact_requests_total", labels) == 1.0


async def test_the_error_budget_stops_calls_before_exact_blocks_the_endpoint(exact, http):
    client = exact.client(http, error_budget=8)
    for _ in range(8):
        with pytest.raises(PermanentError):
            await client.get_where_in(
                "default", exact.division, "crm/Accounts", "ID", [uuid4()], ["NoSuchField"]
            )
    with pytest.raises(TransientError) as caught:
        await client.get_where_in(
            "default", exact.division, "crm/Accounts", "ID", [uuid4()], ["NoSuchField"]
        )

    assert caught.value.code == "error_budget"
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 3600
    (errors,) = (await exact.admin.stats())["errors"]
    assert (errors["endpoint"], errors["errors"], errors["blocked"]) == ("crm/Accounts", 8, False)


async def test_a_refused_token_is_refreshed_once_and_the_read_replayed(exact, http):
    ids = await invoices(exact, 1)
    await exact.admin.inject(kind="http_401", count=1, path_contains="SalesInvoices")
    rows = await exact.client(http).get_where_in(
        "default", exact.division, INVOICES, "InvoiceID", [UUID(ids[0])], ["InvoiceID"]
    )
    assert len(rows) == 1
    assert exact.tokens.refreshed == ["f1"]


async def test_pacing_on_the_headers_spreads_the_minute_to_its_reset_without_a_single_429(
    exact, http
):
    ids = await invoices(exact, 1)
    client = exact.client(http, minutely_reserve=2)
    start = exact.sim.state.clock.now()
    to_reset = (start // 60 + 1) * 60 - start
    for _ in range(70):
        await client.get_where_in(
            "default", exact.division, INVOICES, "InvoiceID", [UUID(ids[0])], ["InvoiceID"]
        )

    stats = await exact.admin.stats()
    division = str(exact.division)
    assert stats["calls"][division] == 70
    assert stats["rate_limited"][division] == {"minutely": 0, "daily": 0}
    # the minute's calls kept coming up to its reset, none waited for a whole window
    assert sum(exact.slept) >= to_reset - 2
    assert max(exact.slept) <= 2.5


async def test_a_filtered_read_goes_through_the_governor_and_every_page(exact, http):
    ids = await invoices(exact, 65)
    rows = await exact.client(http).get_filtered(
        "default", exact.division, INVOICES, "Status eq 10", ["InvoiceID"]
    )
    assert {row["InvoiceID"] for row in rows} >= set(ids)
    assert len(exact.urls) == 2


@dataclass
class Working:
    """token-keeper's answer to ``connections.list``."""

    connections: list[tuple[str, list[int]]]

    async def active(self) -> list[tuple[str, list[int]]]:
        return self.connections


class MemoryWatermarks:
    """Watermarks kept in memory (the Postgres adapter has its own test)."""

    def __init__(self) -> None:
        self.marks: dict[str, datetime | None] = {}

    def exclusive(self, connection_id: str, division: int):  # type: ignore[no-untyped-def]
        @asynccontextmanager
        async def held() -> AsyncIterator[bool]:
            yield True

        return held()

    async def load(self, connection_id: str, division: int) -> dict[str, datetime | None]:
        return dict(self.marks)

    async def commit(self, connection_id: str, division: int, marks: dict) -> None:  # type: ignore[type-arg]
        self.marks.update(marks)


async def test_reconciliation_finds_a_missed_issue_and_a_payment_once(exact, http):
    # nobody is subscribed in this simulator: every change below is a "missed webhook"
    invoice = await exact.admin.create_invoice(amount=121.0)
    issued = await exact.admin.issue_invoice(invoice["InvoiceID"])
    published: list[Message] = []

    async def publish(message: Message) -> None:
        published.append(message)

    reconciler = Reconciler(
        connections=Working([("default", [exact.division])]),
        client_id="c",
        exact=exact.client(http),
        watermarks=MemoryWatermarks(),
        publish=publish,
        lookback=timedelta(days=1),
        overlap=timedelta(0),
    )
    now = datetime.fromtimestamp(exact.sim.state.clock.now(), UTC)
    assert await reconciler.run_once(now) >= 1
    updates = [m for m in published if isinstance(m, ExactWebhookReceived)]
    assert str(invoice["InvoiceID"]) in {str(m.key_id) for m in updates}
    assert all(m.source == "reconciliation" for m in updates)
    assert not any(isinstance(m, PaymentReceived) for m in published)

    exact.sim.state.clock.advance(60)
    await exact.admin.pay_invoice(invoice["InvoiceID"])
    published.clear()
    later = datetime.fromtimestamp(exact.sim.state.clock.now(), UTC)
    await reconciler.run_once(later)
    payments = [m for m in published if isinstance(m, PaymentReceived)]
    assert [(p.invoice_id, p.invoice_number) for p in payments] == [
        (UUID(invoice["InvoiceID"]), str(issued["InvoiceNumber"]))
    ]
    # the invoice itself did not change again, so the watermark keeps it out of this pass
    assert not any(isinstance(m, ExactWebhookReceived) for m in published)
    published.clear()
    await reconciler.run_once(later)
    assert published == []


async def test_a_quiet_division_is_not_published_again_on_every_pass(exact, http):
    """With the default overlap, each pass reads back past its watermark; what the last pass
    published and that did not change since is not published again."""
    invoice = await exact.admin.create_invoice(amount=99.0)
    await exact.admin.issue_invoice(invoice["InvoiceID"])
    published: list[Message] = []

    async def publish(message: Message) -> None:
        published.append(message)

    reconciler = Reconciler(
        connections=Working([("default", [exact.division])]),
        client_id="c",
        exact=exact.client(http),
        watermarks=MemoryWatermarks(),
        publish=publish,
        lookback=timedelta(days=1),
        overlap=timedelta(seconds=300),
    )
    now = datetime.fromtimestamp(exact.sim.state.clock.now(), UTC)
    first = await reconciler.run_once(now)
    assert first >= 1
    assert str(invoice["InvoiceID"]) in {
        str(m.key_id) for m in published if isinstance(m, ExactWebhookReceived)
    }
    for minutes in (5, 10, 15):
        published.clear()
        later = now + timedelta(minutes=minutes)
        assert await reconciler.run_once(later) == 0
        assert published == []


async def test_a_403_from_exact_is_retried_at_the_longest_tier_not_parked(exact, http):
    client = exact.client(http)
    with pytest.raises(TransientError) as caught:  # a division the app cannot reach: 403
        await client.get_where_in(
            "default", exact.division + 1, "crm/Accounts", "ID", [uuid4()], ["ID"]
        )
    assert caught.value.code == 403
    assert caught.value.retry_after == 1800


# -- sync APIs ---------------------------------------------------------------------------------


def synced(exact: Exact, http: httpx.AsyncClient, **options: Any) -> BatchingExactReader:
    client = exact.client(http)
    return BatchingExactReader(SyncReader(client, client, **options), window=0.05, max_batch=60)


async def calls_by_endpoint(exact: Exact) -> dict[str, int]:
    counted: dict[str, int] = {}
    for call in await exact.admin.requests():
        if call["division"] == exact.division:
            counted[call["endpoint"]] = counted.get(call["endpoint"], 0) + 1
    return counted


async def test_a_burst_to_distinct_customers_is_read_in_a_few_sync_calls_not_by_key(exact, http):
    customers = []
    for n in range(70):
        account = await exact.admin.create_account(Name=f"Klant {n}", Country="NL")
        await exact.admin.create_contact(Account=account["ID"], FirstName=f"K{n}", Mobile="+316")
        await exact.admin.create_contact(Account=account["ID"], FirstName="Boekhouding")
        customers.append(account["ID"])
    drafts = [
        await exact.admin.create_invoice(100.0 + n, account_id=customers[n]) for n in range(70)
    ]
    issued = await exact.admin.issue_invoices([d["InvoiceID"] for d in drafts])
    received = datetime.now(UTC)
    reader = synced(exact, http)
    fields = ["InvoiceID", "InvoiceTo", "Status", "InvoiceNumber", "AmountFC"]

    invoices = await asyncio.gather(
        *(
            reader.get_one(
                "default",
                exact.division,
                INVOICES,
                "InvoiceID",
                UUID(d["InvoiceID"]),
                fields,
                changed_before=received,
            )
            for d in drafts
        )
    )
    accounts = await asyncio.gather(
        *(
            reader.get_one(
                "default",
                exact.division,
                "crm/Accounts",
                "ID",
                UUID(a),
                ["ID", "Name"],
                changed_before=received,
            )
            for a in customers
        )
    )
    contacts = await asyncio.gather(
        *(
            reader.get_all(
                "default",
                exact.division,
                "crm/Contacts",
                "Account",
                UUID(a),
                ["ID", "Mobile"],
                changed_before=received,
            )
            for a in customers
        )
    )
    await reader.aclose()

    assert [(i["InvoiceNumber"], i["Status"]) for i in invoices] == [
        (i["InvoiceNumber"], 50) for i in issued
    ]
    assert [a["Name"] for a in accounts] == [f"Klant {n}" for n in range(70)]
    assert [len(c) for c in contacts] == [2] * 70
    calls = await calls_by_endpoint(exact)
    assert calls == {
        "read/sync/Sync/SyncTimestamp": 1,
        "sync/SalesInvoice/SalesInvoices": 1,
        "sync/CRM/Accounts": 1,
        "sync/CRM/Contacts": 1,
    }


async def test_a_read_that_asks_for_a_later_change_catches_up_and_an_earlier_one_does_not(
    exact, http
):
    draft = await exact.admin.create_invoice(121.0)
    key = UUID(draft["InvoiceID"])
    reader = synced(exact, http)

    async def status(changed_before: datetime) -> object:
        row = await reader.get_one(
            "default", exact.division, INVOICES, "InvoiceID", key, ["Status"],
            changed_before=changed_before,
        )  # fmt: skip
        assert row is not None
        return row["Status"]

    before = datetime.now(UTC) - timedelta(seconds=5)
    assert await status(datetime.now(UTC)) == 10
    await exact.admin.issue_invoice(draft["InvoiceID"])
    feed_calls = (await calls_by_endpoint(exact))["sync/SalesInvoice/SalesInvoices"]

    assert await status(before) == 10  # asked for nothing newer: the table answers
    assert (await calls_by_endpoint(exact))["sync/SalesInvoice/SalesInvoices"] == feed_calls
    assert await status(datetime.now(UTC)) == 50  # the webhook came after: a catch-up
    assert (await calls_by_endpoint(exact))["sync/SalesInvoice/SalesInvoices"] == feed_calls + 1
    await reader.aclose()


async def test_a_deleted_contact_leaves_the_mirror_at_the_next_catch_up(exact, http):
    account = await exact.admin.create_account(Name="Klant", Country="NL")
    stays = await exact.admin.create_contact(Account=account["ID"], FirstName="Blijft")
    goes = await exact.admin.create_contact(Account=account["ID"], FirstName="Gaat")
    reader = synced(exact, http)

    async def contact_ids() -> set[str]:
        rows = await reader.get_all(
            "default", exact.division, "crm/Contacts", "Account", UUID(account["ID"]), ["ID"]
        )
        return {row["ID"] for row in rows}

    assert await contact_ids() == {stays["ID"], goes["ID"]}
    await exact.admin.delete("Contacts", goes["ID"])
    assert await contact_ids() == {stays["ID"]}
    assert (await calls_by_endpoint(exact))["sync/Deleted"] == 1
    await reader.aclose()


class RefusedFeeds:
    """A SyncSource whose feeds Exact refuses (not in the app's scope, say)."""

    async def get_sync(self, *args: Any) -> list[dict[str, Any]]:
        raise PermanentError("Exact answered 403", code=403)

    async def sync_start(self, *args: Any) -> int | None:
        raise PermanentError("Exact answered 403", code=403)


async def test_feeds_exact_refuses_leave_every_read_to_go_by_key(exact, http):
    ids = await invoices(exact, 3)
    client = exact.client(http)
    reader = BatchingExactReader(SyncReader(RefusedFeeds(), client), window=0.05, max_batch=60)
    for _ in range(2):
        rows = await asyncio.gather(
            *(
                reader.get_one(
                    "default", exact.division, INVOICES, "InvoiceID", UUID(i), ["Status"]
                )
                for i in ids
            )
        )
        assert [row["Status"] for row in rows if row] == [10, 10, 10]
    await reader.aclose()

    assert await calls_by_endpoint(exact) == {INVOICES: 2}
