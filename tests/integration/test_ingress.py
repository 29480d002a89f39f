"""ingress in-process on the real broker, with token-keeper answering the secret RPC."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

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
from ingress.keys import SECRETS
from ingress.settings import Settings as IngressSettings
from sim_twilio.event_webhook import signed_headers
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.app import run as run_token_keeper
from token_keeper.settings import Settings as TokenKeeperSettings

pytestmark = pytest.mark.integration

SECRET = str(SIMULATOR_DEFAULTS["exact_webhook_secret"])
CLIENT = str(SIMULATOR_DEFAULTS["exact_client_id"])
KEY = "b9e2c7a4-5d31-4f6e-8a0b-1c2d3e4f5a60"
#: Twilio puts the account's SID in every callback; ingress refuses one without the right SID.
ACCOUNT_SID = str(SIMULATOR_DEFAULTS["twilio_account_sid"])
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
        "EventCreatedOn": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not None}


@pytest_asyncio.fixture
async def ingress(infra: Infra, module_database_url: str) -> AsyncIterator[tuple[TestClient, str]]:
    vhost = unique("mlc-ingress")
    amqp_url = create_vhost(infra, vhost)
    stop = asyncio.Event()
    keeper = asyncio.create_task(
        run_token_keeper(
            TokenKeeperSettings(
                amqp_url=amqp_url,
                database_url=module_database_url,
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
    form = {
        "MessageSid": "SM" + "1" * 32,
        "MessageStatus": "delivered",
        "To": "+31612345678",
        "AccountSid": ACCOUNT_SID,
    }
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


async def test_a_connections_own_twilio_account_signs_its_callbacks(ingress, module_database_url):
    client, amqp_url = ingress
    own_token = "acme-own-twilio-auth-token"
    async with db.pool(module_database_url) as pool:
        store = PostgresConnectionStore(pool, Sealer(SEALING_KEY))
        assert await store.set_channel_credentials(
            "ingress-test",
            twilio_account_sid="AC" + "a" * 32,
            twilio_auth_token=own_token,
            twilio_messaging_service_sid=None,
            sendgrid_api_key=None,
        )
    connection, queue = await probe(amqp_url, "twilio.status.#")
    form = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "sent", "AccountSid": "AC" + "a" * 32}
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


# --- inbound SMS, call statuses and SendGrid events ----------------------------------------


def twilio_post_headers(path: str, form: dict[str, str]) -> dict[str, str]:
    token = str(SIMULATOR_DEFAULTS["twilio_auth_token"])
    url = "https://hooks.example.com" + path
    return {"X-Twilio-Signature": twilio_signature(token, url, form.items())}


async def test_an_inbound_stop_is_published_as_an_opt_out_and_answered_with_empty_twiml(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "twilio.inbound.#")
    form = {
        "MessageSid": "SM" + "3" * 32,
        "AccountSid": str(SIMULATOR_DEFAULTS["twilio_account_sid"]),
        "From": "+31612345678",
        "To": "+3197010000000",
        "Body": " Afmelden ",
    }
    path = "/webhooks/twilio/inbound"
    answer = await client.post(path, data=form, headers=twilio_post_headers(path, form))
    assert answer.status == 200
    assert answer.content_type == "text/xml"
    assert "<Response></Response>" in await answer.text()
    message = await queue.get(timeout=10)
    assert message.routing_key == "twilio.inbound.stop"
    event = json.loads(message.body)
    assert event["from_number"] == "+31612345678"
    assert event["keyword"] == "AFMELDEN"
    await connection.close()


async def test_a_forged_inbound_sms_is_refused_and_nothing_is_published(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "twilio.inbound.#")
    form = {"MessageSid": "SM" + "4" * 32, "From": "+31612345678", "To": "+3197010000000"}
    headers = twilio_post_headers("/webhooks/twilio/inbound", {**form, "Body": "START"})
    form["Body"] = "STOP"  # signed for START, sent as STOP
    answer = await client.post("/webhooks/twilio/inbound", data=form, headers=headers)
    assert answer.status == 401
    assert await queue.get(fail=False, timeout=1) is None
    await connection.close()


async def test_call_status_callbacks_are_published_as_call_statuses(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "twilio.status.#")
    form = {
        "CallSid": "CA" + "5" * 32,
        "CallStatus": "no-answer",
        "To": "+31612345678",
        "AccountSid": ACCOUNT_SID,
    }
    path = "/webhooks/twilio/voice-status"
    answer = await client.post(path, data=form, headers=twilio_post_headers(path, form))
    assert answer.status == 200
    message = await queue.get(timeout=10)
    assert message.routing_key == "twilio.status.no-answer"
    assert json.loads(message.body)["resource"] == "call"
    await connection.close()


def sendgrid_post(events: list[dict], timestamp: str | None = None) -> tuple[bytes, dict]:
    raw = json.dumps(events).encode() + b"\r\n"
    return raw, signed_headers(raw, timestamp)


async def test_signed_sendgrid_events_are_published_one_fact_per_sg_event_id(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "email.event.#")
    events = [
        {
            "email": "finance@example.com",
            "event": "delivered",
            "sg_event_id": "ev-delivered-1",
            "sg_message_id": "msg-1.filter",
            "timestamp": 1764500000,
            "mlc_notification_id": "7f3c6f0e-3a4f-4a55-9d59-0f5b0f7a2b11",
        },
        {
            "email": "finance@example.com",
            "event": "bounce",
            "type": "bounce",
            "reason": "550 5.1.1 unknown user",
            "sg_event_id": "ev-bounce-1",
            "timestamp": 1764500001,
        },
    ]
    raw, headers = sendgrid_post(events)
    answer = await client.post("/webhooks/sendgrid/events", data=raw, headers=headers)
    assert answer.status == 200
    first, second = await queue.get(timeout=10), await queue.get(timeout=10)
    assert [first.routing_key, second.routing_key] == [
        "email.event.delivered",
        "email.event.bounce",
    ]
    delivered = json.loads(first.body)
    assert delivered["notification_id"] == "7f3c6f0e-3a4f-4a55-9d59-0f5b0f7a2b11"
    assert json.loads(second.body)["type"] == "bounce"
    # SendGrid posts the same events again: the same message ids, so consumers see one fact.
    again = await client.post("/webhooks/sendgrid/events", data=raw, headers=headers)
    assert again.status == 200
    repeats = [await queue.get(timeout=10), await queue.get(timeout=10)]
    assert {m.message_id for m in repeats} == {first.message_id, second.message_id}
    await connection.close()


async def test_forged_or_unsigned_sendgrid_posts_are_refused_and_nothing_is_published(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "email.event.#")
    event = {"email": "x@example.com", "event": "open", "sg_event_id": "ev-open-1"}
    raw, headers = sendgrid_post([event])
    tampered = raw.replace(b"open", b"click")
    assert (
        await client.post("/webhooks/sendgrid/events", data=tampered, headers=headers)
    ).status == 401
    assert (
        await client.post(
            "/webhooks/sendgrid/events", data=raw, headers={"Content-Type": "application/json"}
        )
    ).status == 401
    vector = json.loads(
        (Path(__file__).parents[1] / "vectors" / "sendgrid-event-webhook.json").read_text()
    )["valid"]
    # Validly signed by another account's key (the published vector's): not ours.
    assert (
        await client.post(
            "/webhooks/sendgrid/events",
            data=vector["payload"].encode(),
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": vector["signature"],
                "X-Twilio-Email-Event-Webhook-Timestamp": vector["timestamp"],
            },
        )
    ).status == 401
    assert await queue.get(fail=False, timeout=1) is None
    await connection.close()


async def test_signed_sendgrid_posts_that_are_not_event_arrays_are_refused(ingress):
    client, _ = ingress
    for raw in (b"{not json", b'{"event": "open"}', b'[{"event": "open"}]'):
        headers = signed_headers(raw)
        answer = await client.post("/webhooks/sendgrid/events", data=raw, headers=headers)
        assert answer.status == (400 if raw.startswith(b"{not") else 422), raw


async def test_a_connections_own_sendgrid_key_verifies_its_event_posts(
    ingress, module_database_url
):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from sim_twilio.event_webhook import sign

    own = ec.generate_private_key(ec.SECP256R1())
    pem = own.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = base64.b64encode(
        own.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).decode()
    async with db.pool(module_database_url) as pool:
        store = PostgresConnectionStore(pool, Sealer(SEALING_KEY))
        assert await store.set_channel_credentials(
            "ingress-test",
            twilio_account_sid=None,
            twilio_auth_token=None,
            twilio_messaging_service_sid=None,
            sendgrid_api_key="SG.acme-own-key",
            sendgrid_webhook_public_key=public,
        )
    client, _ = ingress
    raw = json.dumps([{"email": "a@example.com", "event": "open", "sg_event_id": "e9"}]).encode()
    path = "/webhooks/sendgrid/events?connection=ingress-test"
    by_default_key = signed_headers(raw, "1764500000")
    assert (await client.post(path, data=raw, headers=by_default_key)).status == 401
    by_own_key = {
        **by_default_key,
        "X-Twilio-Email-Event-Webhook-Signature": sign(raw, "1764500000", pem),
    }
    assert (await client.post(path, data=raw, headers=by_own_key)).status == 200


# --- hostile input: always a 4xx, never a 5xx, a hang or a publish ---------------------------


async def test_deeply_nested_json_is_a_400_not_a_recursion_error(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "#")
    deep = b"[" * 5000 + b"]" * 5000
    signed_deep = b'{"Content":' + b"[" * 2000 + b"]" * 2000 + b',"HashCode":"AA"}'
    for raw in (deep, signed_deep):
        assert (await client.post("/webhooks/exact/ingress-test", data=raw)).status == 400
    nested = b"[" * 3000 + b"]" * 3000
    answer = await client.post(
        "/webhooks/sendgrid/events", data=nested, headers=signed_headers(nested)
    )
    assert answer.status == 400
    assert await queue.get(fail=False, timeout=1) is None
    await connection.close()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"MessageSid=SM\xff\xfe&MessageStatus=sent", "application/x-www-form-urlencoded"),
        (b"--xx\r\nContent-Disposition: form-data\r\n\r\nbroken", "multipart/form-data"),
        (b"--xx\r\nnot a part at all", "multipart/form-data; boundary=xx"),
    ],
)
async def test_malformed_forms_on_twilio_endpoints_are_4xx(ingress, body, content_type):
    client, _ = ingress
    for path in ("/webhooks/twilio/status", "/webhooks/twilio/inbound"):
        answer = await client.post(path, data=body, headers={"Content-Type": content_type})
        assert 400 <= answer.status < 500, (path, answer.status)


@pytest.mark.parametrize("connection_id", ["a\x00b", "../../etc", "x" * 65, "-leading-dash"])
async def test_impossible_connection_ids_are_refused_at_once_without_a_lookup(
    ingress, connection_id
):
    client, _ = ingress
    path = "/webhooks/exact/" + urllib.parse.quote(connection_id, safe="")
    answer = await asyncio.wait_for(client.post(path, data=body(content())), timeout=2)
    assert answer.status == 404
    form = {"MessageSid": "SM" + "6" * 32, "MessageStatus": "sent"}
    query = urllib.parse.urlencode({"connection": connection_id})
    status_path = f"/webhooks/twilio/status?{query}"
    answer = await asyncio.wait_for(
        client.post(status_path, data=form, headers=twilio_post_headers(status_path, form)),
        timeout=2,
    )
    assert answer.status == 401


async def test_signed_webhooks_with_absurd_fields_are_422_before_anything_is_published(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "#")
    for changes in (
        {"Topic": "S" * 300},
        {"Action": "Update" * 50},
        {"Topic": "Sales.Invoices"},
        {"Division": 2**31},
        {"Division": 10**30},
        {"Division": 0},
    ):
        answer = await client.post("/webhooks/exact/ingress-test", data=body(content(**changes)))
        assert answer.status == 422, changes
    form = {"MessageSid": "SM" + "7" * 32, "MessageStatus": "x" * 300, "AccountSid": ACCOUNT_SID}
    path = "/webhooks/twilio/status"
    assert (
        await client.post(path, data=form, headers=twilio_post_headers(path, form))
    ).status == 422
    assert await queue.get(fail=False, timeout=1) is None
    await connection.close()


async def test_a_replayed_webhook_is_acknowledged_but_published_once(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "exact.#")
    replayed = body(content(Key="c3d4e5f6-0000-4000-8000-000000000001"))
    for _ in range(20):
        assert (await client.post("/webhooks/exact/ingress-test", data=replayed)).status == 200
    assert await queue.get(timeout=10)
    assert await queue.get(fail=False, timeout=1) is None
    await connection.close()


async def test_an_exact_event_older_than_the_maximum_age_is_acknowledged_not_published(ingress):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "exact.#")
    old = body(
        content(Key="c3d4e5f6-0000-4000-8000-000000000002", EventCreatedOn="2020-01-01T10:00:00")
    )
    answer = await client.post("/webhooks/exact/ingress-test", data=old)
    assert answer.status == 200
    assert (await answer.json())["outcome"] == "too_old"
    assert await queue.get(fail=False, timeout=1) is None
    await connection.close()


async def test_unknown_connections_are_remembered_so_a_flood_costs_one_lookup(ingress):
    client, _ = ingress
    app = client.server.app
    asked = 0
    secrets = app[SECRETS]
    original = secrets._rpc.call

    async def counting(request, reply):  # type: ignore[no-untyped-def]
        nonlocal asked
        asked += 1
        return await original(request, reply)

    secrets._rpc.call = counting  # count the RPCs the cache lets through
    for _ in range(30):
        answer = await client.post("/webhooks/exact/nobody-at-all", data=body(content()))
        assert answer.status == 401
    assert asked == 1


def _status_form(n: int, status: str) -> tuple[dict[str, str], dict[str, str]]:
    """A status callback's form and headers, signed with the install's account."""
    form = {
        "MessageSid": f"SM{n:032d}",
        "MessageStatus": status,
        "To": "+31612345678",
        "AccountSid": ACCOUNT_SID,
    }
    token = str(SIMULATOR_DEFAULTS["twilio_auth_token"])
    url = "https://hooks.example.com/webhooks/twilio/status"
    return form, {"X-Twilio-Signature": twilio_signature(token, url, form.items())}


async def test_callbacks_arriving_together_are_published_together_one_status_per_message(
    ingress,
):
    client, amqp_url = ingress
    connection, queue = await probe(amqp_url, "twilio.status.#")
    calls = [_status_form(n, "delivered" if n % 3 else "sent") for n in range(60)]
    answers = await asyncio.gather(
        *(client.post("/webhooks/twilio/status", data=f, headers=h) for f, h in calls)
    )
    assert [a.status for a in answers] == [200] * 60

    received: dict[str, str] = {}  # MessageSid -> status, from every message published
    messages = 0
    while len(received) < 60:
        message = await queue.get(timeout=10)
        await message.ack()
        messages += 1
        body = json.loads(message.body)
        statuses = body.get("statuses", [body])  # a batch, or a callback that came alone
        kind = "twilio.statuses." if "statuses" in body else "twilio.status."
        assert message.type == kind + statuses[0]["status"]
        assert message.routing_key == "twilio.status." + statuses[0]["status"]
        for status in statuses:
            assert status["status"] == statuses[0]["status"]  # one status per message
            assert status["provider_id"] not in received  # each callback in one message
            received[status["provider_id"]] = status["status"]
    assert await queue.get(fail=False, timeout=1) is None
    assert received == {f["MessageSid"]: f["MessageStatus"] for f, _ in calls}
    assert messages < 60 / 2, f"{messages} messages for 60 callbacks arriving together"
    await connection.close()


async def test_every_callback_of_a_batch_the_broker_did_not_confirm_is_answered_503(ingress):
    client, amqp_url = ingress
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    await channel.exchange_delete("mlc.events")
    calls = [_status_form(n, "delivered") for n in range(20)]
    answers = await asyncio.gather(
        *(client.post("/webhooks/twilio/status", data=f, headers=h) for f, h in calls)
    )
    assert [a.status for a in answers] == [503] * 20  # none is believed queued
    await connection.close()
