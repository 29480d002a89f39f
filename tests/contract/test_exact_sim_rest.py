"""The Exact simulator's REST API, limits and webhooks follow Exact's wire formats.

Envelopes (``d.results``, ``__next`` with ``$skiptoken``, ``__metadata``, ``/Date(ms)/``),
``$select``/``$filter``, the six rate-limit headers and 429s, Atom XML without an Accept
header, error envelopes, the 10-errors-per-hour block, and signed webhooks checked both with
``common.signatures`` and with an independent slice of the raw body (reference 1.2, 3-5, 8).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from common.health import serve
from common.signatures import verify_exact
from common.testing import eventually
from sim_exact.client import SimExactAdmin
from sim_exact.server import RunningSimulator, running
from sim_exact.settings import Settings
from sim_exact.webhooks import webhook_body

pytestmark = pytest.mark.contract

VECTORS = json.loads(
    (Path(__file__).parents[1] / "vectors" / "exact-webhook.json").read_text(encoding="utf-8")
)

PICQER_SLICE = re.compile(rb'^{"Content":(.*),"HashCode":"(.*)"}$', re.DOTALL)
DATE = re.compile(r"^/Date\((\d+)\)/$")
CONTENT_FIELDS = [
    "Topic",
    "ClientId",
    "Division",
    "Action",
    "Key",
    "ExactOnlineEndpoint",
    "EventCreatedOn",
]
DAILY_HEADERS = {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
MINUTELY_HEADERS = {
    "x-ratelimit-minutely-limit",
    "x-ratelimit-minutely-remaining",
    "x-ratelimit-minutely-reset",
}
LIMIT_HEADERS = DAILY_HEADERS | MINUTELY_HEADERS


@dataclass
class Exact:
    """A running simulator with an access token, an HTTP client and the admin client."""

    sim: RunningSimulator
    http: httpx.AsyncClient
    admin: SimExactAdmin
    token: str = ""
    refresh_token: str = ""

    @property
    def division(self) -> int:
        return self.sim.state.settings.exact_division

    @property
    def seed(self) -> Any:
        return self.sim.state.seed

    async def get(self, path: str, *, accept: str | None = "application/json", **kw: Any):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {self.token}"}
        if accept:
            headers["Accept"] = accept
        url = path if path.startswith("http") else f"/api/v1/{self.division}/{path}"
        return await self.http.get(url, headers=headers, **kw)

    async def renew(self) -> None:
        """Refresh the token pair (the simulated clock must be 570 s past the last issue)."""
        settings = self.sim.state.settings
        response = await self.http.post(
            "/api/oauth2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": self.refresh_token,
                "client_id": settings.exact_client_id,
                "client_secret": settings.exact_client_secret.get_secret_value(),
            },
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]
        self.refresh_token = response.json()["refresh_token"]

    async def send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        return await self.http.request(
            method, f"/api/v1/{self.division}/{path}", headers=headers, **kw
        )


@asynccontextmanager
async def exact(**overrides: Any) -> AsyncIterator[Exact]:
    # clock_speed=0 freezes simulated time, so a calendar minute never ends mid-test.
    settings = Settings(http_port=0, **{"clock_speed": 0, **overrides})
    async with (
        running(settings) as sim,
        httpx.AsyncClient(base_url=sim.url) as http,
        SimExactAdmin(sim.url) as admin,
    ):
        api = Exact(sim, http, admin, refresh_token=settings.exact_refresh_token.get_secret_value())
        await api.renew()
        yield api


@pytest_asyncio.fixture
async def api() -> AsyncIterator[Exact]:
    async with exact() as running_exact:
        yield running_exact


@dataclass
class Receiver:
    """A callback endpoint that records raw bodies and answers ``status``."""

    url: str = ""
    status: int = 200
    bodies: list[bytes] = field(default_factory=list)
    content_lengths: list[int | None] = field(default_factory=list)

    def deliveries(self) -> list[bytes]:
        return [body for body in self.bodies if body]


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def hook(request: web.Request) -> web.Response:
        state.bodies.append(await request.read())
        state.content_lengths.append(request.content_length)
        return web.Response(status=state.status)

    app = web.Application()
    app.router.add_post("/webhooks/exact/default", hook)
    async with serve(app, "127.0.0.1", 0) as port:
        state.url = f"http://127.0.0.1:{port}/webhooks/exact/default"
        yield state


def _error_value(response: httpx.Response) -> str:
    return response.json()["error"]["message"]["value"]  # type: ignore[no-any-return]


# envelopes and query options ---------------------------------------------------------------


async def test_current_me_needs_no_division_and_carries_no_limit_headers(api):
    response = await api.http.get(
        "/api/v1/current/Me",
        headers={"Authorization": f"Bearer {api.token}", "Accept": "application/json"},
    )

    assert response.status_code == 200
    me = response.json()["d"]["results"][0]
    assert me["CurrentDivision"] == api.division
    assert {"UserID", "UserName", "FullName", "Email"} <= set(me)
    assert not LIMIT_HEADERS & set(response.headers.keys())


async def test_select_returns_only_the_named_fields_and_metadata(api):
    response = await api.get("crm/Contacts", params={"$select": "ID,FullName,Mobile"})

    assert response.status_code == 200
    rows = response.json()["d"]["results"]
    assert len(rows) == 2
    for row in rows:
        assert list(row) == ["__metadata", "ID", "FullName", "Mobile"]
        assert set(row["__metadata"]) == {"uri", "type"}
        assert row["__metadata"]["uri"].endswith(f"crm/Contacts(guid'{row['ID']}')")


async def test_select_of_an_unknown_field_is_a_400_envelope(api):
    response = await api.get("crm/Contacts", params={"$select": "ID,Nickname"})

    assert response.status_code == 400
    assert "Nickname" in _error_value(response)


async def test_filter_on_guids_with_or_and_parentheses(api):
    seed = api.seed
    text = (
        f"(ID eq guid'{seed.contact_id}' or ID eq guid'{seed.second_contact_id.upper()}')"
        f" and Account eq guid'{seed.account_id}'"
    )

    both = await api.get("crm/Contacts", params={"$filter": text, "$select": "ID"})
    main = await api.get(
        "crm/Contacts", params={"$filter": "IsMainContact eq true and Mobile ne null"}
    )

    assert sorted(r["ID"] for r in both.json()["d"]["results"]) == sorted(
        [seed.contact_id, seed.second_contact_id]
    )
    assert [r["ID"] for r in main.json()["d"]["results"]] == [seed.contact_id]


async def test_an_or_filter_past_the_node_limit_is_refused_with_exacts_400_envelope(api):
    # 100 nodes by default: 25 "ID eq guid'..'" terms make 4 * 25 - 1 = 99, 26 make 103
    ids = [api.seed.contact_id] * 26
    fits = " or ".join(f"ID eq guid'{i}'" for i in ids[:25])
    too_long = " or ".join(f"ID eq guid'{i}'" for i in ids)

    accepted = await api.get("crm/Contacts", params={"$filter": fits, "$select": "ID"})
    refused = await api.get("crm/Contacts", params={"$filter": too_long, "$select": "ID"})

    assert accepted.status_code == 200
    assert [r["ID"] for r in accepted.json()["d"]["results"]] == [api.seed.contact_id]
    assert refused.status_code == 400
    assert set(refused.json()) == {"error"}
    assert set(refused.json()["error"]) == {"code", "message"}
    assert "node count limit of '100' has been exceeded" in _error_value(refused)


async def test_filter_on_numbers_strings_and_datetimes(api):
    invoice = await api.admin.create_invoice(250.0, description="Broodleveringen")
    await api.admin.create_invoice(10.0, description="Croissants")

    by_amount = await api.get("salesinvoice/SalesInvoices", params={"$filter": "AmountDC ge 100"})
    by_text = await api.get(
        "salesinvoice/SalesInvoices", params={"$filter": "Description eq 'Broodleveringen'"}
    )
    by_date = await api.get(
        "salesinvoice/SalesInvoices",
        params={"$filter": "Modified ge datetime'2000-01-01T00:00:00' and Status eq 10"},
    )

    assert [r["InvoiceID"] for r in by_amount.json()["d"]["results"]] == [invoice["InvoiceID"]]
    assert [r["InvoiceID"] for r in by_text.json()["d"]["results"]] == [invoice["InvoiceID"]]
    assert len(by_date.json()["d"]["results"]) == 2


async def test_collections_page_at_60_rows_with_a_next_url_carrying_a_skiptoken(api):
    for n in range(64):
        await api.admin.create_account(Name=f"Klant {n:02d}")

    first = await api.get("crm/Accounts", params={"$select": "ID,Name", "$inlinecount": "allpages"})
    page = first.json()["d"]
    next_url = page["__next"]
    second = await api.get(next_url)

    assert len(page["results"]) == 60
    assert page["__count"] == "65"
    assert next_url.startswith(api.sim.url + f"/api/v1/{api.division}/crm/Accounts?")
    assert "$skiptoken=guid'" in next_url.replace("%27", "'")
    assert "$select=ID%2CName" in next_url or "$select=ID,Name" in next_url
    rest = second.json()["d"]
    assert "__next" not in rest
    ids = [r["ID"] for r in page["results"]] + [r["ID"] for r in rest["results"]]
    assert len(ids) == len(set(ids)) == 65


async def test_top_limits_the_rows(api):
    response = await api.get("crm/Contacts", params={"$top": "1"})

    assert len(response.json()["d"]["results"]) == 1
    assert "__next" not in response.json()["d"]


async def test_dates_are_epoch_milliseconds_in_the_date_wrapper(api):
    clock = await api.admin.advance_clock(0)
    invoice = await api.admin.create_invoice(99.95)

    response = await api.get(f"salesinvoice/SalesInvoices(guid'{invoice['InvoiceID']}')")

    record = response.json()["d"]
    match = DATE.match(record["Modified"])
    assert match is not None
    assert int(match.group(1)) == clock["epoch_ms"]
    assert DATE.match(record["InvoiceDate"])
    assert record["Status"] == 10
    assert record["Type"] == 8020
    assert record["InvoiceNumber"] is None


async def test_an_unknown_key_is_a_404_error_envelope(api):
    response = await api.get(
        "salesinvoice/SalesInvoices(guid'00000000-0000-0000-0000-000000000001')"
    )

    assert response.status_code == 404
    body = response.json()
    assert set(body["error"]) == {"code", "message"}
    assert set(body["error"]["message"]) == {"lang", "value"}


async def test_a_missing_or_unknown_token_is_a_401_envelope(api):
    missing = await api.http.get(
        f"/api/v1/{api.division}/crm/Accounts", headers={"Accept": "application/json"}
    )
    unknown = await api.http.get(
        f"/api/v1/{api.division}/crm/Accounts",
        headers={"Accept": "application/json", "Authorization": "Bearer not-a-token"},
    )

    assert missing.status_code == unknown.status_code == 401
    assert _error_value(missing)


async def test_an_unknown_division_is_refused(api):
    response = await api.http.get(
        "/api/v1/999/crm/Accounts",
        headers={"Accept": "application/json", "Authorization": f"Bearer {api.token}"},
    )

    assert response.status_code == 403
    assert _error_value(response)


async def test_without_accept_json_the_answer_is_atom_xml(api):
    response = await api.get("crm/Accounts", accept=None)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/atom+xml")
    assert response.text.startswith("<?xml")
    assert "m:properties" in response.text
    assert "Bakkerij De Vries B.V." in response.text


# rate limits and the error block -----------------------------------------------------------


async def test_every_division_call_carries_the_six_limit_headers_in_epoch_ms(api):
    clock = await api.admin.advance_clock(0)

    response = await api.get("crm/Accounts")

    headers = response.headers
    assert set(headers.keys()) >= LIMIT_HEADERS
    assert headers["X-RateLimit-Limit"] == "5000"
    assert headers["X-RateLimit-Remaining"] == "4999"
    assert headers["X-RateLimit-Minutely-Limit"] == "60"
    assert headers["X-RateLimit-Minutely-Remaining"] == "59"
    now_ms = clock["epoch_ms"]
    minute_reset = int(headers["X-RateLimit-Minutely-Reset"])
    day_reset = int(headers["X-RateLimit-Reset"])
    assert minute_reset % 60_000 == 0
    assert now_ms < minute_reset <= now_ms + 60_000
    assert day_reset % 86_400_000 == 0
    assert now_ms < day_reset <= now_ms + 86_400_000


async def test_the_61st_call_in_a_minute_is_429_with_only_the_minutely_headers(api):
    for _ in range(60):
        assert (await api.get("crm/Accounts", params={"$top": "1"})).status_code == 200

    refused = await api.get("crm/Accounts")

    assert refused.status_code == 429
    assert _error_value(refused)
    assert LIMIT_HEADERS & set(refused.headers.keys()) == MINUTELY_HEADERS
    assert refused.headers["X-RateLimit-Minutely-Remaining"] == "0"
    stats = await api.admin.stats()
    assert stats["rate_limited"][str(api.division)] == {"minutely": 1, "daily": 0}
    # The next calendar minute opens the window again.
    reset_ms = int(refused.headers["X-RateLimit-Minutely-Reset"])
    clock = await api.admin.advance_clock(0)
    await api.admin.advance_clock((reset_ms - clock["epoch_ms"]) / 1000)
    assert (await api.get("crm/Accounts")).status_code == 200


async def test_past_the_daily_limit_only_the_daily_headers_come_back():
    async with exact(daily_limit=3) as api:
        for _ in range(3):
            assert (await api.get("crm/Accounts")).status_code == 200

        refused = await api.get("crm/Accounts")

        assert refused.status_code == 429
        assert LIMIT_HEADERS & set(refused.headers.keys()) == DAILY_HEADERS


async def test_ten_errors_on_an_endpoint_within_the_hour_block_it(api):
    unknown = "salesinvoice/SalesInvoices(guid'00000000-0000-0000-0000-0000000000ff')"
    for _ in range(10):
        assert (await api.get(unknown)).status_code == 404

    blocked = await api.get(unknown)
    other_endpoint = await api.get("crm/Accounts")

    assert blocked.status_code == 403
    assert "Blocked" in _error_value(blocked)
    assert other_endpoint.status_code == 200
    errors = (await api.admin.stats())["errors"]
    [entry] = [e for e in errors if e["endpoint"] == "salesinvoice/SalesInvoices"]
    assert entry["errors"] == 10
    assert entry["blocked"] is True
    await api.admin.advance_clock(3600)
    await api.renew()
    assert (await api.get(unknown)).status_code == 404


async def test_injected_faults_answer_once_then_the_api_recovers(api):
    await api.admin.inject(kind="http_503", count=1, path_contains="crm/Accounts")

    failed = await api.get("crm/Accounts")
    recovered = await api.get("crm/Accounts")

    assert failed.status_code == 503
    assert recovered.status_code == 200
    recorded = await api.admin.requests(path_contains="crm/Accounts")
    assert [(r["status"], r["fault"]) for r in recorded] == [(503, "http_503"), (200, None)]


async def test_metrics_count_api_calls_by_endpoint_and_status(api):
    await api.get("crm/Accounts")

    text = (await api.http.get("/metrics")).text

    assert 'mlc_sim_exact_api_calls_total{endpoint="crm/Accounts",status="200"} 1.0' in text
    assert 'mlc_sim_exact_token_requests_total{grant_type="refresh_token",outcome="issued"}' in text


# webhooks ----------------------------------------------------------------------------------


def _independently_verified(body: bytes, secret: str) -> bool:
    match = PICQER_SLICE.match(body)
    assert match is not None, body
    digest = hmac.new(secret.encode(), match.group(1), hashlib.sha256).hexdigest().upper()
    return hmac.compare_digest(digest, match.group(2).decode())


async def _subscribe(api: Exact, url: str, topic: str = "SalesInvoices") -> httpx.Response:
    return await api.send(
        "POST", "webhooks/WebhookSubscriptions", json={"CallbackURL": url, "Topic": topic}
    )


def _content(body: bytes) -> dict[str, Any]:
    return json.loads(body)["Content"]  # type: ignore[no-any-return]


def _compact_vectors() -> list[Any]:
    """The valid vectors whose Content is exactly Exact's seven fields, compact."""
    chosen = []
    for vector in VECTORS["vectors"]:
        if vector["expected"] != "valid":
            continue
        content = json.loads(vector["body"])["Content"]
        compact = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
        if list(content) == CONTENT_FIELDS and compact in vector["body"]:
            chosen.append(pytest.param(vector, id=vector["id"]))
    return chosen


@pytest.mark.parametrize("vector", _compact_vectors())
def test_the_simulator_builds_the_vector_bodies_byte_for_byte(vector: dict[str, Any]) -> None:
    content = json.loads(vector["body"])["Content"]

    body = webhook_body(
        VECTORS["webhook_secret"],
        topic=content["Topic"],
        client_id=content["ClientId"],
        division=content["Division"],
        action=content["Action"],
        key=content["Key"],
        endpoint=content["ExactOnlineEndpoint"],
        event_created_on=content["EventCreatedOn"],
    )

    assert body == vector["body"].encode()


async def test_creating_a_subscription_sends_an_empty_validation_post(api, receiver):
    response = await _subscribe(api, receiver.url)

    assert response.status_code == 201
    subscription = response.json()["d"]
    assert subscription["Topic"] == "SalesInvoices"
    assert subscription["CallbackURL"] == receiver.url
    assert receiver.bodies == [b""]
    assert receiver.content_lengths == [0]
    listed = await api.get("webhooks/WebhookSubscriptions")
    assert [s["ID"] for s in listed.json()["d"]["results"]] == [subscription["ID"]]


async def test_a_subscription_fails_when_the_callback_answers_500(api, receiver):
    receiver.status = 500

    response = await _subscribe(api, receiver.url)

    assert response.status_code == 500
    assert _error_value(response) == "Invalid: Post to callback URL endpoint returns 500"
    listed = await api.get("webhooks/WebhookSubscriptions")
    assert listed.json()["d"]["results"] == []


async def test_subscriptions_cannot_be_updated_only_deleted(api, receiver):
    subscription = (await _subscribe(api, receiver.url)).json()["d"]
    path = f"webhooks/WebhookSubscriptions(guid'{subscription['ID']}')"

    updated = await api.send("PUT", path, json={"CallbackURL": receiver.url + "/v2"})
    deleted = await api.send("DELETE", path)

    assert updated.status_code == 400
    assert deleted.status_code == 204
    assert (await api.get("webhooks/WebhookSubscriptions")).json()["d"]["results"] == []


async def test_invoice_changes_are_delivered_signed_with_the_webhook_secret(api, receiver):
    await _subscribe(api, receiver.url)
    secret = api.sim.state.settings.exact_webhook_secret.get_secret_value()

    invoice = await api.admin.create_invoice(121.0, description="Broodleveringen")
    await api.admin.issue_invoice(invoice["InvoiceID"])
    bodies = await eventually(
        receiver.deliveries, until=lambda b: len(b) == 2, what="two webhook deliveries"
    )

    for body in bodies:
        assert verify_exact(body, secret) is True
        assert _independently_verified(body, secret) is True
        assert verify_exact(body, "another-secret") is False
        assert list(json.loads(body)) == ["Content", "HashCode"]
        assert list(_content(body)) == CONTENT_FIELDS
        # Compact, as Exact sends it.
        assert b'": ' not in body
        assert b'", "' not in body
    content = _content(bodies[0])
    assert content["Topic"] == "SalesInvoices"
    assert content["Action"] == "Update"
    assert content["Key"] == invoice["InvoiceID"]
    assert content["Division"] == api.division
    assert content["ClientId"] == api.sim.state.settings.exact_client_id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", content["EventCreatedOn"])
    assert content["ExactOnlineEndpoint"] == (
        f"{api.sim.url}/api/v1/{api.division}/salesinvoice/SalesInvoices"
        f"(guid'{invoice['InvoiceID']}')"
    )
    fetched = await api.get(content["ExactOnlineEndpoint"])
    assert fetched.json()["d"]["Status"] == 50
    assert fetched.json()["d"]["InvoiceNumber"] is not None


async def test_deleting_an_invoice_fires_delete_and_only_subscribed_topics_fire(api, receiver):
    await _subscribe(api, receiver.url)
    invoice = await api.admin.create_invoice(10.0)
    await api.admin.create_account(Name="Geen abonnement B.V.")

    await api.admin.delete_invoice(invoice["InvoiceID"])

    bodies = await eventually(receiver.deliveries, until=lambda b: len(b) == 2)
    actions = sorted((_content(b)["Topic"], _content(b)["Action"]) for b in bodies)
    assert actions == [("SalesInvoices", "Delete"), ("SalesInvoices", "Update")]
    deliveries = await eventually(
        api.admin.webhooks,
        until=lambda d: len(d) == 2 and all(x["outcome"] == "delivered" for x in d),
    )
    assert {(d["action"], d["status"], d["attempts"]) for d in deliveries} == {
        ("Update", 200, 1),
        ("Delete", 200, 1),
    }


async def test_a_failing_callback_is_retried_and_recorded(receiver):
    receiver.status = 503
    async with exact(webhook_attempts=2) as api:
        await api.admin.subscribe(api.division, receiver.url, "Contacts")

        await api.admin.create_contact(
            Account=api.seed.account_id, FirstName="Piet", LastName="Jansen"
        )

        deliveries = await eventually(
            api.admin.webhooks, until=lambda d: len(d) == 1 and d[0]["outcome"] != "pending"
        )
    assert deliveries[0]["outcome"] == "failed"
    assert deliveries[0]["attempts"] == 2
    assert deliveries[0]["status"] == 503
    assert len(receiver.deliveries()) == 2
    assert receiver.deliveries()[0] == receiver.deliveries()[1]


async def test_a_callback_url_setting_subscribes_every_document_topic_at_start(receiver):
    async with exact(callback_url=receiver.url) as api:
        subscriptions = (await api.get("webhooks/WebhookSubscriptions")).json()["d"]["results"]
        assert sorted(s["Topic"] for s in subscriptions) == sorted(
            [
                "SalesInvoices",
                "SalesEntries",
                "SalesOrders",
                "PurchaseOrders",
                "PurchaseInvoices",
                "PurchaseEntries",
                "Accounts",
                "Contacts",
            ]
        )
        assert receiver.bodies == []  # no validation POST for these

        order = await api.admin.create("SalesOrders", OrderedBy=api.seed.account_id, AmountDC=5.0)

        bodies = await eventually(receiver.deliveries, until=lambda b: len(b) == 1)
        assert _content(bodies[0])["Topic"] == "SalesOrders"
        assert _content(bodies[0])["Key"] == order["OrderID"]


async def test_issuing_opens_a_receivable_and_paying_settles_it_without_a_webhook(api):
    invoice = await api.admin.create_invoice(amount=99.5)
    await api.admin.issue_invoice(invoice["InvoiceID"])
    by_entry = {
        "$filter": f"TransactionEntryID eq guid'{invoice['InvoiceID']}'",
        "$select": "ID,IsFullyPaid,Status,AmountDC,InvoiceNumber",
    }
    (open_item,) = (await api.get("cashflow/Receivables", params=by_entry)).json()["d"]["results"]
    assert open_item["IsFullyPaid"] is False
    assert open_item["Status"] == 20
    assert open_item["AmountDC"] == 99.5
    before = (await api.admin.advance_clock(60))["now"]
    webhooks_before = len(await api.admin.webhooks())
    await api.admin.pay_invoice(invoice["InvoiceID"])
    since = before.split("+")[0].replace("Z", "")[:19]
    paid = {
        "$filter": f"IsFullyPaid eq true and Modified gt datetime'{since}'",
        "$select": "ID,InvoiceNumber,LastPaymentDate",
    }
    rows = (await api.get("cashflow/Receivables", params=paid)).json()["d"]["results"]
    assert [r["ID"] for r in rows] == [open_item["ID"]]
    assert rows[0]["LastPaymentDate"].startswith("/Date(")
    assert len(await api.admin.webhooks()) == webhooks_before
    with pytest.raises(httpx.HTTPStatusError):
        await api.admin.pay_invoice(invoice["InvoiceID"])


# sync APIs (Exact's KB "Deleted" and "Sync/SyncTimestamp"): Timestamp is a row version that
# grows with every change, only "Timestamp gt N" may be filtered on, pages of 1,000 follow
# __next, deletes are in sync/Deleted, SyncTimestamp gives the row version to start from.


async def read_all(api: Any, path: str, **params: str) -> tuple[list[dict[str, Any]], int]:
    """Every row of a sync feed, following ``__next``; (rows, pages)."""
    response = await api.get(path, params=params)
    assert response.status_code == 200, response.text
    rows, pages = list(response.json()["d"]["results"]), 1
    while next_url := response.json()["d"].get("__next"):
        response = await api.get(next_url)
        assert response.status_code == 200, response.text
        rows += response.json()["d"]["results"]
        pages += 1
    return rows, pages


async def test_a_first_sync_from_timestamp_1_reads_everything_in_row_version_order():
    async with exact() as api:
        for n in range(4):
            await api.admin.create_account(Name=f"Klant {n}", Country="NL")
        rows, _ = await read_all(
            api, "sync/CRM/Accounts", **{"$filter": "Timestamp gt 1", "$select": "ID,Timestamp"}
        )
        stamps = [row["Timestamp"] for row in rows]

        assert len(rows) == 5  # the seeded customer and the four above
        assert stamps == sorted(stamps)
        assert len(set(stamps)) == len(stamps)
        assert set(rows[0]) == {"__metadata", "ID", "Timestamp"}


async def test_a_change_gets_a_higher_timestamp_and_only_it_is_read_after_the_last_one():
    async with exact() as api:
        account = await api.admin.create_account(Name="Groothandel", Country="NL")
        rows, _ = await read_all(api, "sync/CRM/Accounts", **{"$filter": "Timestamp gt 1"})
        last = max(row["Timestamp"] for row in rows)
        before = next(row["Timestamp"] for row in rows if row["ID"] == account["ID"])

        await api.admin.update("Accounts", account["ID"], Name="Groothandel Noord")
        changed, _ = await read_all(
            api, "sync/CRM/Accounts", **{"$filter": f"Timestamp gt {last}", "$select": "ID,Name"}
        )
        again, _ = await read_all(
            api, "sync/CRM/Accounts", **{"$filter": f"Timestamp gt {last + 1}"}
        )

        assert [(r["ID"], r["Name"]) for r in changed] == [(account["ID"], "Groothandel Noord")]
        assert before < last + 1
        assert again == []


async def test_pages_hold_the_sync_page_size_and_next_reads_the_rest_once():
    async with exact(sync_page_size=3) as api:
        account = await api.admin.create_account(Name="Veel contacten", Country="NL")
        for n in range(7):
            await api.admin.create_contact(Account=account["ID"], FirstName=f"C{n}")
        rows, pages = await read_all(
            api, "sync/CRM/Contacts", **{"$filter": "Timestamp gt 1", "$select": "ID,Account"}
        )

        assert len(rows) == 9  # the seed's two contacts and seven more
        assert len({row["ID"] for row in rows}) == 9
        assert pages == 3


async def test_a_filter_on_anything_but_timestamp_is_refused():
    async with exact() as api:
        response = await api.get("sync/CRM/Accounts", params={"$filter": "Name eq 'x'"})
        assert response.status_code == 400
        assert "Timestamp" in _error_value(response)


async def test_a_deleted_contact_is_in_sync_deleted_not_in_the_contacts_feed():
    async with exact() as api:
        contact = await api.admin.create_contact(Account=api.seed.account_id, FirstName="Weg")
        rows, _ = await read_all(api, "sync/CRM/Contacts", **{"$filter": "Timestamp gt 1"})
        last = max(row["Timestamp"] for row in rows)

        await api.admin.delete("Contacts", contact["ID"])
        deleted, _ = await read_all(api, "sync/Deleted", **{"$filter": f"Timestamp gt {last}"})
        contacts, _ = await read_all(api, "sync/CRM/Contacts", **{"$filter": "Timestamp gt 1"})

        assert [(d["EntityKey"], d["EntityType"]) for d in deleted] == [(contact["ID"], 5)]
        assert deleted[0]["Timestamp"] > last
        assert contact["ID"] not in {row["ID"] for row in contacts}


async def test_sales_invoices_sync_rows_carry_the_invoice_id_and_a_header_line_number():
    async with exact() as api:
        invoice = await api.admin.create_invoice(121.0)
        rows, _ = await read_all(
            api,
            "sync/SalesInvoice/SalesInvoices",
            **{"$filter": "Timestamp gt 1", "$select": "ID,InvoiceID,LineNumber,AmountFC"},
        )
        (row,) = [r for r in rows if r["InvoiceID"] == invoice["InvoiceID"]]

        assert (row["ID"], row["LineNumber"], row["AmountFC"]) == (invoice["InvoiceID"], 0, 121.0)


async def test_sync_timestamp_gives_the_row_version_of_the_first_change_on_or_after_a_date():
    async with exact() as api:
        old = await api.admin.create_invoice(10.0)
        api.sim.state.clock.advance(300)  # less than the access token's 600 s
        moment = api.sim.state.clock.now_dt().strftime("%Y-%m-%dT%H:%M:%S")
        new = await api.admin.create_invoice(20.0)
        response = await api.get(
            "read/sync/Sync/SyncTimestamp",
            params={"modified": f"datetime'{moment}'", "endPoint": "'SalesInvoices'"},
        )
        assert response.status_code == 200, response.text
        (answer,) = response.json()["d"]["results"]
        start = answer["TimeStampAsBigInt"]
        rows, _ = await read_all(
            api, "sync/SalesInvoice/SalesInvoices", **{"$filter": f"Timestamp gt {start - 1}"}
        )

        assert answer["API"] == "SalesInvoices"
        assert [r["InvoiceID"] for r in rows] == [new["InvoiceID"]]
        assert old["InvoiceID"] != new["InvoiceID"]


async def test_sync_calls_count_against_the_limits_under_their_own_endpoint():
    async with exact() as api:
        response = await api.get("sync/CRM/Contacts", params={"$filter": "Timestamp gt 1"})
        calls = await api.admin.requests(path_contains="sync/CRM/Contacts")

        assert "x-ratelimit-minutely-remaining" in response.headers
        assert [c["endpoint"] for c in calls] == ["sync/CRM/Contacts"]
