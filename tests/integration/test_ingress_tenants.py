"""Tenant isolation and per-source rate limits at ingress, on the real broker with token-keeper
answering the credential lookups.

Company A and company B each bring their own Twilio account (and SendGrid key); company C sends
from the install's account. Holding B's auth token must not let B speak for A's account, nor
for the install's; C's connection id must not open a door either. Every refusal publishes
nothing and is counted in mlc_security_events_total{kind}.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
import pytest_asyncio
import structlog
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client.parser import text_string_to_metric_families

from common import db
from common.crypto import Sealer, generate_key
from common.settings import SIMULATOR_DEFAULTS
from common.signatures import twilio_signature
from common.testing.infra import Infra, create_vhost, delete_vhost, unique
from ingress.app import create_app
from ingress.keys import CHANNELS
from ingress.ratelimit import RateLimiter, client_source, parse_networks
from ingress.settings import Settings as IngressSettings
from sim_twilio.event_webhook import sign, signed_headers
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.app import run as run_token_keeper
from token_keeper.settings import Settings as TokenKeeperSettings

pytestmark = pytest.mark.integration

BASE = "https://hooks.example.com"
SEALING_KEY = generate_key()
INSTALL_SID = str(SIMULATOR_DEFAULTS["twilio_account_sid"])
INSTALL_TOKEN = str(SIMULATOR_DEFAULTS["twilio_auth_token"])
#: Where token-keeper's housekeeping would refresh these connections' Exact tokens: refused at
#: once (the discard port), never a real Exact.
NOWHERE = "http://127.0.0.1:9"


@dataclass(frozen=True)
class Company:
    connection_id: str
    account_sid: str | None = None
    auth_token: str | None = None
    sendgrid_pem: bytes | None = None


@dataclass
class Tenants:
    client: TestClient
    amqp_url: str
    a: Company
    b: Company
    c: Company


def sendgrid_key_pair() -> tuple[bytes, str]:
    """A private key (PEM) to sign SendGrid posts with, and its public half as configured."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, base64.b64encode(public).decode()


async def register(
    store: PostgresConnectionStore, company: Company, public_key: str | None
) -> None:
    await store.ensure(
        id=company.connection_id,
        base_url=NOWHERE,
        client_id=str(SIMULATOR_DEFAULTS["exact_client_id"]),
        client_secret="unused",
        webhook_secret="unused",
        division=1,
        refresh_token="unused",
    )
    assert await store.set_channel_credentials(
        company.connection_id,
        twilio_account_sid=company.account_sid,
        twilio_auth_token=company.auth_token,
        twilio_messaging_service_sid=None,
        sendgrid_api_key="SG.own" if public_key else None,
        sendgrid_webhook_public_key=public_key,
    )


async def start_ingress(amqp_url: str, **changes: Any) -> TestClient:
    settings = IngressSettings(amqp_url=amqp_url, public_base_url=BASE, **changes)
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client


@pytest_asyncio.fixture
async def tenants(infra: Infra, module_database_url: str) -> AsyncIterator[Tenants]:
    vhost = unique("mlc-tenants")
    amqp_url = create_vhost(infra, vhost)
    suffix = uuid.uuid4().hex[:8]
    pem_a, public_a = sendgrid_key_pair()
    a = Company(f"tenant-a-{suffix}", "AC" + "a" * 32, "a-own-auth-token", pem_a)
    b = Company(f"tenant-b-{suffix}", "AC" + "b" * 32, "b-own-auth-token")
    c = Company(f"tenant-c-{suffix}")
    async with db.pool(module_database_url) as pool:
        await db.migrate(pool, "tokens", "token_keeper")
        store = PostgresConnectionStore(pool, Sealer(SEALING_KEY))
        for company, public in ((a, public_a), (b, None), (c, None)):
            await register(store, company, public)
    stop = asyncio.Event()
    keeper = asyncio.create_task(
        run_token_keeper(
            TokenKeeperSettings(
                amqp_url=amqp_url,
                database_url=module_database_url,
                secret_key=SEALING_KEY,
                http_port=0,
                exact_connection_id=f"tenants-exact-{suffix}",
            ),
            stop,
        )
    )
    client = await start_ingress(amqp_url)
    try:
        yield Tenants(client, amqp_url, a, b, c)
    finally:
        await client.close()
        stop.set()
        await keeper
        delete_vhost(infra, vhost)


async def probe(amqp_url: str, key: str = "#") -> tuple[Any, aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("mlc.events", routing_key=key)
    return connection, queue


def status_form(account_sid: str | None, sid: str = "SM" + "1" * 32) -> dict[str, str]:
    form = {"MessageSid": sid, "MessageStatus": "read", "To": "+31612345678"}
    return form if account_sid is None else {**form, "AccountSid": account_sid}


def inbound_form(account_sid: str) -> dict[str, str]:
    return {
        "MessageSid": "SM" + "9" * 32,
        "AccountSid": account_sid,
        "From": "+31612345678",
        "To": "+3197010000000",
        "Body": "STOP",
    }


async def post_twilio(
    client: TestClient, route: str, form: dict[str, str], token: str, connection: str | None
) -> Any:
    """Post ``form`` to ``route`` as Twilio would, signed with ``token`` over the public URL."""
    path = route if connection is None else f"{route}?connection={connection}"
    signature = twilio_signature(token, BASE + path, form.items())
    return await client.post(path, data=form, headers={"X-Twilio-Signature": signature})


async def security_events(client: TestClient) -> dict[str, float]:
    """mlc_security_events_total by kind, as /metrics exposes it."""
    text = await (await client.get("/metrics")).text()
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mlc_security_events_total"
    }


async def nothing_published(queue: aio_pika.abc.AbstractQueue) -> bool:
    return await queue.get(fail=False, timeout=1) is None


# --- tenant isolation --------------------------------------------------------------------------


async def test_b_signing_a_status_with_as_account_sid_on_its_own_connection_is_refused(tenants):
    client, a, b = tenants.client, tenants.a, tenants.b
    connection, queue = await probe(tenants.amqp_url)
    before = await security_events(client)
    with structlog.testing.capture_logs() as logs:
        answer = await post_twilio(
            client,
            "/webhooks/twilio/status",
            status_form(a.account_sid),
            b.auth_token,
            b.connection_id,
        )
    assert answer.status == 403
    assert (await answer.json())["outcome"] == "cross_tenant_account"
    assert await nothing_published(queue)
    after = await security_events(client)
    assert after["cross_tenant_account"] == before["cross_tenant_account"] + 1
    [event] = [entry for entry in logs if entry["event"] == "security_event"]
    assert (event["kind"], event["log_level"]) == ("cross_tenant_account", "warning")
    assert (event["connection_id"], event["account_sid"]) == (b.connection_id, a.account_sid)
    assert event["route"] == "/webhooks/twilio/status"
    await connection.close()


@pytest.mark.parametrize(
    ("route", "form"),
    [
        (
            "/webhooks/twilio/voice-status",
            {"CallSid": "CA" + "2" * 32, "CallStatus": "completed"},
        ),
        ("/webhooks/twilio/inbound", inbound_form("")),
    ],
)
async def test_b_signing_calls_and_inbound_sms_for_as_account_is_refused(tenants, route, form):
    client, a, b = tenants.client, tenants.a, tenants.b
    connection, queue = await probe(tenants.amqp_url)
    forged = {**form, "AccountSid": a.account_sid}
    answer = await post_twilio(client, route, forged, b.auth_token, b.connection_id)
    assert answer.status == 403
    assert await nothing_published(queue)
    await connection.close()


async def test_b_signing_for_as_connection_with_bs_token_is_a_forged_signature(tenants):
    client, a, b = tenants.client, tenants.a, tenants.b
    before = await security_events(client)
    answer = await post_twilio(
        client, "/webhooks/twilio/status", status_form(a.account_sid), b.auth_token, a.connection_id
    )
    assert answer.status == 401
    after = await security_events(client)
    assert after["forged_signature"] == before["forged_signature"] + 1


async def test_a_connection_without_its_own_twilio_account_is_refused_even_when_signed(tenants):
    client, c = tenants.client, tenants.c
    connection, queue = await probe(tenants.amqp_url)
    before = await security_events(client)
    # Signed with the install's token and AccountSid: the install's callbacks never name C.
    for route, form in (
        ("/webhooks/twilio/status", status_form(INSTALL_SID)),
        ("/webhooks/twilio/inbound", inbound_form(INSTALL_SID)),
    ):
        answer = await post_twilio(client, route, form, INSTALL_TOKEN, c.connection_id)
        assert answer.status == 403, route
        assert (await answer.json())["outcome"] == "connection_without_own_account"
    assert await nothing_published(queue)
    after = await security_events(client)
    assert after["connection_without_own_account"] == before["connection_without_own_account"] + 2
    await connection.close()


async def test_the_install_accounts_callback_with_a_foreign_or_missing_account_sid_is_refused(
    tenants,
):
    client, b = tenants.client, tenants.b
    connection, queue = await probe(tenants.amqp_url)
    before = await security_events(client)
    for account_sid in (b.account_sid, None):
        answer = await post_twilio(
            client, "/webhooks/twilio/status", status_form(account_sid), INSTALL_TOKEN, None
        )
        assert answer.status == 403, account_sid
    answer = await post_twilio(
        client, "/webhooks/twilio/inbound", inbound_form(b.account_sid), INSTALL_TOKEN, None
    )
    assert answer.status == 403
    assert await nothing_published(queue)
    after = await security_events(client)
    assert after["cross_tenant_account"] == before["cross_tenant_account"] + 3
    await connection.close()


async def test_a_genuine_own_account_callback_is_published_with_its_connection(tenants):
    client, a = tenants.client, tenants.a
    connection, queue = await probe(tenants.amqp_url, "twilio.#")
    sid = "SM" + "4" * 32
    answer = await post_twilio(
        client,
        "/webhooks/twilio/status",
        status_form(a.account_sid, sid),
        a.auth_token,
        a.connection_id,
    )
    assert answer.status == 200
    status = json.loads((await queue.get(timeout=10)).body)
    assert (status["provider_id"], status["connection_id"]) == (sid, a.connection_id)
    answer = await post_twilio(
        client,
        "/webhooks/twilio/inbound",
        inbound_form(a.account_sid),
        a.auth_token,
        a.connection_id,
    )
    assert answer.status == 200
    inbound = json.loads((await queue.get(timeout=10)).body)
    assert (inbound["connection_id"], inbound["account_sid"]) == (a.connection_id, a.account_sid)
    await connection.close()


async def test_the_install_accounts_genuine_callback_is_published_without_a_connection(tenants):
    client = tenants.client
    connection, queue = await probe(tenants.amqp_url, "twilio.status.#")
    answer = await post_twilio(
        client,
        "/webhooks/twilio/status",
        status_form(INSTALL_SID, "SM" + "5" * 32),
        INSTALL_TOKEN,
        None,
    )
    assert answer.status == 200
    assert json.loads((await queue.get(timeout=10)).body)["connection_id"] is None
    await connection.close()


async def test_sendgrid_events_on_a_connection_need_its_own_key(tenants):
    client, a, c = tenants.client, tenants.a, tenants.c
    connection, queue = await probe(tenants.amqp_url, "email.event.#")
    raw = json.dumps([{"email": "a@example.com", "event": "open", "sg_event_id": "t-1"}]).encode()
    # C has no own key: even the install's valid signature does not make it C's event.
    refused = await client.post(
        f"/webhooks/sendgrid/events?connection={c.connection_id}",
        data=raw,
        headers=signed_headers(raw, "1764500000"),
    )
    assert refused.status == 403
    assert await nothing_published(queue)
    own = {**signed_headers(raw, "1764500000")}
    own["X-Twilio-Email-Event-Webhook-Signature"] = sign(raw, "1764500000", a.sendgrid_pem)
    accepted = await client.post(
        f"/webhooks/sendgrid/events?connection={a.connection_id}", data=raw, headers=own
    )
    assert accepted.status == 200
    assert json.loads((await queue.get(timeout=10)).body)["connection_id"] == a.connection_id
    await connection.close()


# --- rate limits -------------------------------------------------------------------------------


async def test_a_source_past_its_burst_gets_429_with_retry_after_and_recovers(tenants):
    # a token back every 2 s: the six requests below take far less, however busy the machine
    client = await start_ingress(
        tenants.amqp_url, ingress_rate_limit_per_second=0.5, ingress_rate_limit_burst=5
    )
    try:
        path = "/webhooks/twilio/status"
        answers = [(await client.post(path, data={"x": "1"})).status for _ in range(5)]
        assert 429 not in answers
        refused = await client.post(path, data={"x": "1"})
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await security_events(client))["rate_limited"] == 1
        await asyncio.sleep(2.2)  # 0.5/s: one token back
        assert (await client.post(path, data={"x": "1"})).status == 401
        assert (await client.get("/healthz")).status == 200  # probes are not limited
    finally:
        await client.close()


async def test_a_rate_limited_request_costs_no_credential_lookup(tenants):
    client = await start_ingress(
        tenants.amqp_url, ingress_rate_limit_per_second=0.01, ingress_rate_limit_burst=3
    )
    lookups = 0
    channels = client.server.app[CHANNELS]
    original = channels._rpc.call

    async def counting(request, reply):  # type: ignore[no-untyped-def]
        nonlocal lookups
        lookups += 1
        return await original(request, reply)

    channels._rpc.call = counting
    try:
        statuses = []
        for n in range(10):  # a different unknown connection each time: no cache helps
            path = f"/webhooks/twilio/status?connection=nobody-{n}"
            answer = await client.post(path, data={"x": "1"}, headers={"X-Twilio-Signature": "x"})
            statuses.append(answer.status)
        assert statuses == [401] * 3 + [429] * 7
        assert lookups == 3
    finally:
        await client.close()


async def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(tenants):
    path = "/webhooks/sendgrid/events"
    for trusted, expected in (("", 429), ("127.0.0.1", 401)):
        client = await start_ingress(
            tenants.amqp_url,
            ingress_rate_limit_per_second=0.01,
            ingress_rate_limit_burst=1,
            ingress_trusted_proxies=trusted,
        )
        try:
            statuses = [
                (
                    await client.post(path, data=b"[]", headers={"X-Forwarded-For": f"192.0.2.{n}"})
                ).status
                for n in range(1, 4)
            ]
        finally:
            await client.close()
        assert statuses[1:] == [expected, expected], trusted


# --- the limiter on its own --------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_flood_from_ever_new_sources_keeps_at_most_capacity_buckets():
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, capacity=100, clock=clock)
    for n in range(10_000):
        limiter.take(f"198.51.{n // 256}.{n % 256}")
    assert len(limiter) <= 100


def test_idle_sources_are_forgotten_and_an_active_one_stays_limited():
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=2, capacity=1000, clock=clock)
    for n in range(50):
        limiter.take(f"idle-{n}")
    clock.now += 10  # every bucket refilled: the same as none
    assert [limiter.take("busy").admitted for _ in range(3)] == [True, True, False]
    assert len(limiter) == 1
    refusal = limiter.take("busy")
    assert not refusal.admitted
    assert not refusal.report  # this source's refusals were reported a moment ago
    assert 0 < refusal.retry_after <= 1


def test_a_flooding_source_is_reported_once_a_minute_not_once_a_request():
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, capacity=10, clock=clock, report_every=60.0)
    reports = 0
    for _ in range(6000):  # ten minutes of ten requests a second
        clock.now += 0.1
        verdict = limiter.take("flood")
        reports += verdict.report
    assert reports == 10


def test_the_client_is_the_first_untrusted_hop_from_the_right():
    trusted = parse_networks("10.0.0.0/8, 192.0.2.7")
    chain = ["203.0.113.9, 198.51.100.1, 10.1.2.3"]
    assert client_source("192.0.2.7", chain, trusted) == "198.51.100.1"
    assert client_source("203.0.113.5", chain, trusted) == "203.0.113.5"  # untrusted peer
    assert client_source("10.0.0.1", ["not-an-ip, 10.2.2.2"], trusted) == "10.2.2.2"
    assert client_source("2001:db8::1", [], trusted) == client_source("2001:db8::ff", [], trusted)
    assert client_source(None, chain, trusted) == "unknown"


def test_a_mistyped_trusted_proxy_fails_at_start_up():
    with pytest.raises(ValueError, match="does not appear to be"):
        IngressSettings(ingress_trusted_proxies="10.0.0.0/8, proxy.internal")


def test_the_limiter_refills_at_the_configured_rate_in_real_time():
    limiter = RateLimiter(rate=50.0, burst=1, capacity=10)
    assert limiter.take("x").admitted
    assert not limiter.take("x").admitted
    time.sleep(0.05)
    assert limiter.take("x").admitted
