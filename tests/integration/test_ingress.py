"""ingress in-process on the real broker, with token-keeper answering the secret RPC."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aio_pika
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from common import db
from common.crypto import Sealer, generate_key
from common.settings import SIMULATOR_DEFAULTS
from common.signatures import exact_hashcode, twilio_signature
from common.testing.infra import Infra, create_vhost, delete_vhost, unique
from ingress.app import create_app
from ingress.settings import Settings as IngressSettings
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.app import run as run_token_keeper
from token_keeper.settings import Settings as TokenKeeperSettings

pytestmark = pytest.mark.integration

SECRET = str(SIMULATOR_DEFAULTS["exact_webhook_secret"])
CLIENT = str(SIMULATOR_DEFAULTS["exact_client_id"])
KEY = "b9e2c7a4-5d31-4f6e-8a0b-1c2d3e4f5a60"
#: One sealing key for the session's database: rows sealed by one test are opened by the next.
SEALING_KEY = generate_key()


def body(content: dict, secret: str = SECRET) -> bytes:
    raw = json.dumps(content, separators=(",", ":")).encode()
    return b'{"Content":' + raw + b',"HashCode":"' + exact_hashcode(secret, raw).encode() + b'"}'


def content(**changes: object) -> dict:
    base = {
        "Topic": "SalesInvoices",
        "ClientId": CLIENT,
        "Division": 3108123,
        "Action": "Update",
        "Key": KEY,
        "ExactOnlineEndpoint": "https://start.exactonline.nl/api/v1/3108123/x",
        "EventCreatedOn": "2026-11-25T10:00:00.000",
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


@pytest_asyncio.fixture
async def ingress(infra: Infra, database_url: str) -> AsyncIterator[tuple[TestClient, str]]:
    vhost = unique("mlc-ingress")
    amqp_url = create_vhost(infra, vhost)
    stop = asyncio.Event()
    keeper = asyncio.create_task(
        run_token_keeper(
            TokenKeeperSettings(
                amqp_url=amqp_url,
                database_url=database_url,
                secret_key=SEALING_KEY,
                http_port=0,
                exact_connection_id="ingress-test",
            ),
            stop,
        )
    )
    settings = IngressSettings(amqp_url=amqp_url, public_base_url="https://hooks.example.com")
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield client, amqp_url
    finally:
        await client.close()
        stop.set()
        await keeper
        delete_vhost(infra, vhost)


async def probe(
    amqp_url: str, key: str
) -> tuple[aio_pika.abc.AbstractConnection, aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("mlc.events", routing_key=key)
    return connection, queue


async def test_a_signed_webhook_is_published_once_confirmed(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "exact.#")
    answer = await client.post("/webhooks/exact/ingress-test", data=body(content()))
    assert answer.status == 200
    message = await queue.get(timeout=10)
    assert message.routing_key == "exact.salesinvoices.update"
    assert json.loads(message.body)["key_id"] == KEY
    assert message.headers["x-schema-version"] == "1"
    await connection.close()


async def test_signed_but_wrong_shape_is_422_and_unknown_connections_are_refused(ingress):
    client, _ = ingress
    assert (
        await client.post("/webhooks/exact/ingress-test", data=body(content(Key=None)))
    ).status == 422
    assert (
        await client.post(
            "/webhooks/exact/ingress-test",
            data=body(content(ClientId="00000000-0000-0000-0000-000000000000")),
        )
    ).status == 422
    assert (await client.post("/webhooks/exact/nobody", data=body(content()))).status == 401


async def test_any_byte_changed_in_content_is_refused(ingress):
    client, _ = ingress
    good = body(content())
    start = good.index(b"{", 1)
    for offset in (start + 2, start + 40, len(good) - 90):
        tampered = bytearray(good)
        tampered[offset] ^= 0x01
        assert (await client.post("/webhooks/exact/ingress-test", data=bytes(tampered))).status in (
            400,
            401,
        )


async def test_the_answer_is_503_when_the_broker_cannot_take_the_event(ingress):
    client, amqp_url = ingress
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await channel.exchange_delete("mlc.events")
    answer = await client.post("/webhooks/exact/ingress-test", data=body(content()))
    assert answer.status == 503
    await connection.close()


async def test_twilio_status_callbacks_are_verified_against_the_public_url(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "twilio.status.#")
    form = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "To": "+31612345678"}
    token = str(SIMULATOR_DEFAULTS["twilio_auth_token"])
    good = twilio_signature(token, "https://hooks.example.com/webhooks/twilio/status", form.items())
    forged = twilio_signature(
        token, "https://elsewhere.example.com/webhooks/twilio/status", form.items()
    )
    assert (
        await client.post(
            "/webhooks/twilio/status", data=form, headers={"X-Twilio-Signature": forged}
        )
    ).status == 401
    assert (
        await client.post(
            "/webhooks/twilio/status", data=form, headers={"X-Twilio-Signature": good}
        )
    ).status == 200
    message = await queue.get(timeout=10)
    assert message.routing_key == "twilio.status.delivered"
    assert await queue.get(fail=False, timeout=1) is None
    await connection.close()


async def test_a_connections_own_twilio_account_signs_its_callbacks(ingress, database_url):
    client, amqp_url = ingress
    own_token = "acme-own-twilio-auth-token"
    async with db.pool(database_url) as pool:
        store = PostgresConnectionStore(pool, Sealer(SEALING_KEY))
        assert await store.set_channel_credentials(
            "ingress-test",
            twilio_account_sid="AC" + "a" * 32,
            twilio_auth_token=own_token,
            twilio_messaging_service_sid=None,
            sendgrid_api_key=None,
        )
    connection, queue = await probe(amqp_url, "twilio.status.#")
    form = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "sent"}
    url = "https://hooks.example.com/webhooks/twilio/status?connection=ingress-test"
    path = "/webhooks/twilio/status?connection=ingress-test"
    default = str(SIMULATOR_DEFAULTS["twilio_auth_token"])
    assert (
        await client.post(
            path,
            data=form,
            headers={"X-Twilio-Signature": twilio_signature(default, url, form.items())},
        )
    ).status == 401
    assert (
        await client.post(
            path,
            data=form,
            headers={"X-Twilio-Signature": twilio_signature(own_token, url, form.items())},
        )
    ).status == 200
    assert (await queue.get(timeout=10)).routing_key == "twilio.status.sent"
    await connection.close()
