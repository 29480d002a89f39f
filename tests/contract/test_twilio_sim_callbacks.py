"""The Twilio simulator's status callbacks, auth and fault injection, against the oracles.

Callbacks land on a small aiohttp receiver and are checked with the twilio SDK's
``RequestValidator`` (independent oracle) and with ``common.signatures.twilio_verify`` (what the
ingress uses). Error bodies are checked against Twilio's documented shape
``{code, message, more_info, status}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from multidict import MultiDict
from pydantic import SecretStr
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client as TwilioClient

from common.signatures import twilio_verify
from common.testing import eventually
from common.testing.web import serving
from sim_twilio.client import SimTwilioAdmin
from sim_twilio.server import serve
from sim_twilio.settings import Settings

pytestmark = pytest.mark.contract

RECIPIENT = "+31612345678"
API_KEY_SID = "SK" + "0a1b2c3d" * 4


@dataclass
class Callback:
    """One POST the receiver got: the URL as requested, the form, the signature header."""

    url: str
    form: MultiDict[str]
    signature: str

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(self.form.items())


@dataclass
class Receiver:
    """Collects callbacks; ``answers`` lists HTTP statuses to give first (then 204)."""

    base_url: str = ""
    received: list[Callback] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    def url(self, path: str = "/status") -> str:
        return self.base_url + path

    async def handle(self, request: web.Request) -> web.Response:
        form = MultiDict((await request.post()).items())
        self.received.append(
            Callback(str(request.url), form, request.headers.get("X-Twilio-Signature", ""))
        )
        status = self.answers.pop(0) if self.answers else 204
        return web.Response(status=status)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    async with serving(app) as base_url:
        receiver.base_url = base_url
        yield receiver


@dataclass
class Sim:
    settings: Settings
    admin: SimTwilioAdmin
    http: httpx.AsyncClient
    base_url: str

    @property
    def messages_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.settings.twilio_account_sid}/Messages.json"

    @property
    def token(self) -> str:
        return self.settings.twilio_auth_token.get_secret_value()

    async def send(self, **extra: str) -> httpx.Response:
        data = {
            "To": RECIPIENT,
            "MessagingServiceSid": self.settings.twilio_messaging_service_sid,
            "Body": "Invoice 2024-001 is ready",
            **extra,
        }
        return await self.http.post(self.messages_path, data=data)


def _settings() -> Settings:
    return Settings(
        sim_twilio_callback_delay=0.01,
        sim_twilio_callback_backoff=0.01,
        sim_twilio_callback_timeout=2.0,
        twilio_api_key_sid=API_KEY_SID,
        twilio_api_key_secret=SecretStr("sim-api-key-secret"),
    )


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Sim]:
    settings = _settings()
    auth = (settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())
    async with (
        serve(settings) as base_url,
        SimTwilioAdmin(base_url) as admin,
        httpx.AsyncClient(base_url=base_url, auth=auth, timeout=10.0) as http,
    ):
        yield Sim(settings, admin, http, base_url)


def assert_twilio_error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message", "more_info", "status"}
    assert body["code"] == code
    assert body["status"] == status
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert isinstance(body["message"], str)
    assert body["message"]
    return body  # type: ignore[no-any-return]


async def callbacks(receiver: Receiver, count: int) -> list[Callback]:
    """Wait until ``count`` callbacks arrived and return them."""
    await eventually(
        lambda: len(receiver.received), until=lambda n: n >= count, what=f"{count} callbacks"
    )
    return receiver.received


# --- signatures -------------------------------------------------------------------------------


async def test_status_callbacks_are_signed_as_the_sdk_expects(sim: Sim, receiver: Receiver) -> None:
    callback_url = receiver.url("/webhooks/twilio/status?notification=42")
    response = await sim.send(StatusCallback=callback_url)
    assert response.status_code == 201
    sid = response.json()["sid"]

    sent, delivered = await callbacks(receiver, 2)
    validator = RequestValidator(sim.token)
    for callback in (sent, delivered):
        assert callback.url == callback_url
        assert validator.validate(callback.url, callback.form, callback.signature)
        assert twilio_verify(sim.token, callback.url, callback.pairs, callback.signature)
        form = callback.form
        assert form["MessageSid"] == form["SmsSid"] == form["SmsMessageSid"] == sid
        assert form["AccountSid"] == sim.settings.twilio_account_sid
        assert form["MessagingServiceSid"] == sim.settings.twilio_messaging_service_sid
        assert form["From"] == sim.settings.sim_twilio_pool_sender
        assert form["To"] == RECIPIENT
        assert form["ApiVersion"] == "2010-04-01"
        assert form["SmsStatus"] == form["MessageStatus"]
        assert "ErrorCode" not in form
    assert [c.form["MessageStatus"] for c in (sent, delivered)] == ["sent", "delivered"]
    assert "RawDlrDoneDate" not in sent.form
    assert len(delivered.form["RawDlrDoneDate"]) == 10
    assert delivered.form["RawDlrDoneDate"].isdigit()

    [message] = await sim.admin.messages()
    assert message["status"] == "delivered"
    assert [c["status"] for c in message["callbacks"]] == ["sent", "delivered"]
    for recorded in message["callbacks"]:
        assert recorded["delivered"] is True
        assert [a["http_status"] for a in recorded["attempts"]] == [204]


async def test_a_tampered_callback_fails_both_validators(sim: Sim, receiver: Receiver) -> None:
    await sim.send(StatusCallback=receiver.url())
    sent, _ = await callbacks(receiver, 2)
    validator = RequestValidator(sim.token)
    tampered = MultiDict(sent.form)
    tampered["MessageStatus"] = "delivered"
    assert not validator.validate(sent.url, tampered, sent.signature)
    assert not twilio_verify(sim.token, sent.url, list(tampered.items()), sent.signature)
    other_url = sent.url + "&x=1" if "?" in sent.url else sent.url + "?x=1"
    assert not validator.validate(other_url, sent.form, sent.signature)
    assert not twilio_verify("not-the-token", sent.url, sent.pairs, sent.signature)


async def test_an_api_key_authenticates_and_the_auth_token_still_signs(
    sim: Sim, receiver: Receiver
) -> None:
    response = await sim.http.post(
        sim.messages_path,
        data={
            "To": RECIPIENT,
            "From": "+15005550006",
            "Body": "hi",
            "StatusCallback": receiver.url(),
        },
        auth=(API_KEY_SID, "sim-api-key-secret"),
    )
    assert response.status_code == 201
    sent, _ = await callbacks(receiver, 2)
    assert RequestValidator(sim.token).validate(sent.url, sent.form, sent.signature)
    assert sent.form["From"] == "+15005550006"
    assert "MessagingServiceSid" not in sent.form


async def test_call_progress_callbacks_are_signed_and_numbered(
    sim: Sim, receiver: Receiver
) -> None:
    response = await sim.http.post(
        f"/2010-04-01/Accounts/{sim.settings.twilio_account_sid}/Calls.json",
        data={
            "To": RECIPIENT,
            "From": sim.settings.twilio_voice_from,
            "Twiml": "<Response><Say>Your invoice is due</Say></Response>",
            "StatusCallback": receiver.url("/webhooks/twilio/voice-status"),
            "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        },
    )
    assert response.status_code == 201, response.text
    received = await callbacks(receiver, 4)
    validator = RequestValidator(sim.token)
    for callback in received:
        assert validator.validate(callback.url, callback.form, callback.signature)
        assert callback.form["CallSid"] == response.json()["sid"]
        assert callback.form["Timestamp"].endswith("+0000")
    assert [c.form["CallStatus"] for c in received] == [
        "initiated",
        "ringing",
        "in-progress",
        "completed",
    ]
    assert [c.form["SequenceNumber"] for c in received] == ["0", "1", "2", "3"]
    assert received[-1].form["CallDuration"] == str(sim.settings.sim_twilio_call_duration)
    assert "CallDuration" not in received[0].form


# --- auth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(("AC" + "5ec0de" * 5 + "00", "wrong-token"), id="wrong-token"),
        pytest.param((API_KEY_SID, "wrong-secret"), id="wrong-key-secret"),
        pytest.param(None, id="no-credentials"),
    ],
)
async def test_wrong_basic_auth_gets_401_with_code_20003(
    sim: Sim, auth: tuple[str, str] | None
) -> None:
    async with httpx.AsyncClient(base_url=sim.base_url, auth=auth) as client:
        response = await client.post(sim.messages_path, data={"To": RECIPIENT, "Body": "x"})
    assert_twilio_error(response, 401, 20003)
    assert await sim.admin.messages() == []


async def test_another_account_in_the_path_gets_404_with_code_20404(sim: Sim) -> None:
    path = f"/2010-04-01/Accounts/AC{'1' * 32}/Messages.json"
    response = await sim.http.post(path, data={"To": RECIPIENT, "Body": "x"})
    assert_twilio_error(response, 404, 20404)


# --- faults -----------------------------------------------------------------------------------


async def test_an_injected_500_fails_once_then_the_send_succeeds(sim: Sim) -> None:
    await sim.admin.inject(kind="http_500", count=1)
    assert_twilio_error(await sim.send(), 500, 20500)
    assert (await sim.send()).status_code == 201
    assert [r["status"] for r in await sim.admin.requests("Messages.json")] == [500, 201]
    assert len(await sim.admin.messages()) == 1


async def test_injected_429s_are_not_processed(sim: Sim) -> None:
    await sim.admin.inject(kind="http_429", count=2)
    assert_twilio_error(await sim.send(), 429, 20429)
    assert_twilio_error(await sim.send(), 429, 20429)
    assert (await sim.send()).status_code == 201
    assert len(await sim.admin.messages()) == 1
    assert await sim.admin.faults() == []


async def test_a_rejected_recipient_gets_21211_every_time(sim: Sim) -> None:
    await sim.admin.reject(to="+31600000001", code=21211)
    for _ in range(2):
        body = assert_twilio_error(await sim.send(To="+31600000001"), 400, 21211)
        assert "+31600000001" in body["message"]
    assert (await sim.send()).status_code == 201  # other recipients are unaffected
    assert len(await sim.admin.requests("Messages.json")) == 3
    assert len(await sim.admin.faults()) == 1  # persistent


async def test_an_opted_out_recipient_gets_21610(sim: Sim) -> None:
    await sim.admin.inject(kind="reject", to="+31600000002", code=21610)
    assert_twilio_error(await sim.send(To="+31600000002"), 400, 21610)


async def test_duplicate_callbacks_are_delivered_twice(sim: Sim, receiver: Receiver) -> None:
    await sim.admin.inject(kind="duplicate_callbacks", count=1)
    await sim.send(StatusCallback=receiver.url())
    received = await callbacks(receiver, 4)
    assert [c.form["MessageStatus"] for c in received] == ["sent", "sent", "delivered", "delivered"]
    assert received[2].pairs == received[3].pairs
    assert all(RequestValidator(sim.token).validate(c.url, c.form, c.signature) for c in received)


async def test_reordered_callbacks_deliver_the_final_status_first(
    sim: Sim, receiver: Receiver
) -> None:
    await sim.admin.inject(kind="reorder_callbacks", count=1)
    response = await sim.send(StatusCallback=receiver.url())
    received = await callbacks(receiver, 2)
    assert [c.form["MessageStatus"] for c in received] == ["delivered", "sent"]
    message = await sim.admin.message(response.json()["sid"])
    assert message["status"] == "delivered"  # the resource itself never goes backwards


async def test_an_injected_final_status_carries_its_error_code(
    sim: Sim, receiver: Receiver
) -> None:
    await sim.admin.inject(kind="final_status", status="undelivered", error_code=30003, count=1)
    response = await sim.send(StatusCallback=receiver.url())
    sent, undelivered = await callbacks(receiver, 2)
    assert undelivered.form["MessageStatus"] == "undelivered"
    assert undelivered.form["ErrorCode"] == "30003"
    assert "ErrorCode" not in sent.form
    assert undelivered.form["RawDlrDoneDate"].isdigit()
    message = await sim.admin.message(response.json()["sid"])
    assert (message["status"], message["error_code"]) == ("undelivered", 30003)


async def test_a_failing_callback_is_retried_and_every_attempt_recorded(
    sim: Sim, receiver: Receiver
) -> None:
    receiver.answers = [500, 503]
    response = await sim.send(StatusCallback=receiver.url())
    await callbacks(receiver, 4)  # sent: 500, 503, 204; delivered: 204
    message = await sim.admin.message(response.json()["sid"])
    sent, delivered = message["callbacks"]
    assert [a["http_status"] for a in sent["attempts"]] == [500, 503, 204]
    assert sent["delivered"] is True
    assert [a["http_status"] for a in delivered["attempts"]] == [204]


async def test_an_unreachable_callback_is_given_up_after_the_attempts(sim: Sim) -> None:
    response = await sim.send(StatusCallback="http://127.0.0.1:9/status")
    sid = response.json()["sid"]

    async def attempts() -> list[Any]:
        return (await sim.admin.message(sid))["callbacks"]

    found = await eventually(
        attempts,
        until=lambda cbs: len(cbs) == 2 and len(cbs[1]["attempts"]) == 3,
        what="two callbacks tried three times each",
    )
    for callback in found:
        assert callback["delivered"] is False
        assert {a["http_status"] for a in callback["attempts"]} == {None}
        assert all(a["error"] for a in callback["attempts"])


async def test_a_timeout_holds_the_answer_but_the_message_exists(sim: Sim) -> None:
    await sim.admin.inject(kind="timeout", seconds=30, count=1)
    with pytest.raises(httpx.ReadTimeout):
        await sim.http.post(
            sim.messages_path,
            data={"To": RECIPIENT, "From": "+15005550006", "Body": "hi"},
            timeout=0.5,
        )
    [message] = await sim.admin.messages()
    assert message["to"] == RECIPIENT
    [recorded] = await sim.admin.requests("Messages.json")
    assert recorded["status"] is None  # still held
    listed = await sim.http.get(sim.messages_path, params={"To": RECIPIENT})
    assert [m["sid"] for m in listed.json()["messages"]] == [message["sid"]]


async def test_a_fault_for_one_recipient_leaves_others_alone(sim: Sim) -> None:
    await sim.admin.inject(kind="http_500", to="+31600000003")
    assert (await sim.send()).status_code == 201
    assert_twilio_error(await sim.send(To="+31600000003"), 500, 20500)


async def test_a_malformed_fault_is_refused(sim: Sim) -> None:
    with pytest.raises(httpx.HTTPStatusError) as error:
        await sim.admin.inject(kind="explode")
    assert error.value.response.status_code == 400
    assert "kind" in error.value.response.json()["error"]


async def test_reset_forgets_everything(sim: Sim) -> None:
    await sim.admin.inject(kind="http_429", count=5)
    await sim.send()
    await sim.admin.reset()
    assert await sim.admin.requests() == []
    assert await sim.admin.faults() == []
    assert await sim.admin.messages() == []
    assert (await sim.send()).status_code == 201


async def test_health_and_metrics(sim: Sim) -> None:
    for path in ("/healthz", "/readyz"):
        response = await sim.http.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
    await sim.send()
    text = (await sim.http.get("/metrics")).text
    assert (
        'mlc_sim_twilio_requests_total{method="POST",'
        'route="/2010-04-01/Accounts/{AccountSid}/Messages.json",status="201"} 1.0'
    ) in text
    assert RECIPIENT not in text


async def test_callbacks_stop_at_reset(sim: Sim, receiver: Receiver) -> None:
    slow = Settings(**{**_settings().model_dump(), "sim_twilio_callback_delay": 30.0})
    async with serve(slow) as base_url, SimTwilioAdmin(base_url) as admin:
        async with httpx.AsyncClient(base_url=base_url, auth=sim.http.auth) as client:
            response = await client.post(
                sim.messages_path,
                data={
                    "To": RECIPIENT,
                    "Body": "x",
                    "From": "+15005550006",
                    "StatusCallback": receiver.url(),
                },
            )
        assert response.status_code == 201
        await asyncio.wait_for(admin.reset(), timeout=5)
        assert await admin.messages() == []
    assert receiver.received == []


# --- the twilio SDK as a client ---------------------------------------------------------------


class _ToSimulator(TwilioHttpClient):
    """The SDK's own HTTP client, sending what it meant for api.twilio.com to the simulator."""

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=10)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().request(
            method, url.replace("https://api.twilio.com", self.base_url), *args, **kwargs
        )


async def test_the_twilio_sdk_sends_and_reads_errors_through_the_simulator(
    sim: Sim, receiver: Receiver
) -> None:
    client = TwilioClient(
        sim.settings.twilio_account_sid, sim.token, http_client=_ToSimulator(sim.base_url)
    )
    message = await asyncio.to_thread(
        client.messages.create,
        to=RECIPIENT,
        messaging_service_sid=sim.settings.twilio_messaging_service_sid,
        body="Invoice 2024-001 is ready",
        media_url=["https://example.com/a.png", "https://example.com/b.png"],
        status_callback=receiver.url(),
    )
    assert message.status == "accepted"
    assert message.sid.startswith("MM")
    assert message.num_media == "2"
    [recorded] = await sim.admin.requests("Messages.json")
    assert [v for k, v in recorded["form"] if k == "MediaUrl"] == [
        "https://example.com/a.png",
        "https://example.com/b.png",
    ]
    await callbacks(receiver, 2)
    fetched = await asyncio.to_thread(client.messages(message.sid).fetch)
    assert fetched.status == "delivered"
    listed = await asyncio.to_thread(
        client.messages.list, to=RECIPIENT, date_sent_after=datetime(2000, 1, 1, tzinfo=UTC)
    )
    assert [m.sid for m in listed] == [message.sid]

    await sim.admin.reject(to="+31600000004", code=21610)
    with pytest.raises(TwilioRestException) as error:
        await asyncio.to_thread(
            client.messages.create, to="+31600000004", from_="+15005550006", body="x"
        )
    assert (error.value.status, error.value.code) == (400, 21610)
