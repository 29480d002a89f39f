"""The Twilio simulator's voice calls as the dispatcher will place them: answering machine
detection, unanswered outcomes, the call list and ``Twiml`` checks.

Oracles independent of the simulator: the twilio SDK's ``RequestValidator`` for callback
signatures, the SDK itself as a client (the parameter names it sends, the pages it follows),
Twilio's OpenAPI description (``ListCall`` parameters and page schema, when
``../shared/twilio-oai`` is at hand; the committed ``create_call.json`` fixture otherwise).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from jsonschema import Draft202012Validator
from multidict import MultiDict
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client as TwilioClient

import sim_twilio
from common.signatures import twilio_verify
from common.testing import eventually
from common.testing.web import serving
from sim_twilio.calls import LIST_QUERY_PARAMETERS
from sim_twilio.client import SimTwilioAdmin
from sim_twilio.server import serve
from sim_twilio.settings import Settings

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
CALL = json.loads(
    (Path(sim_twilio.__file__).parent / "openapi" / "create_call.json").read_text("utf-8")
)
RECIPIENT = "+31612345678"
TWIML = "<Response><Say>Invoice 2024-001 is overdue</Say></Response>"
AMD_FIELDS = ["AccountSid", "CallSid", "AnsweredBy", "MachineDetectionDuration"]


# --- a callback receiver and the simulator ------------------------------------------------------


@dataclass
class Callback:
    """One POST as received: the URL requested, the form, the signature header."""

    url: str
    path: str
    form: MultiDict[str]
    signature: str


@dataclass
class Receiver:
    """Answers 204 to every POST and keeps it."""

    base_url: str = ""
    received: list[Callback] = field(default_factory=list)

    def url(self, path: str) -> str:
        return self.base_url + path

    def on(self, path: str) -> list[Callback]:
        return [c for c in self.received if c.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        form = MultiDict((await request.post()).items())
        signature = request.headers.get("X-Twilio-Signature", "")
        self.received.append(Callback(str(request.url), request.path, form, signature))
        return web.Response(status=204)


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
    def calls_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.settings.twilio_account_sid}/Calls.json"

    @property
    def token(self) -> str:
        return self.settings.twilio_auth_token.get_secret_value()

    async def call(self, **extra: Any) -> httpx.Response:
        data = {"To": RECIPIENT, "From": self.settings.twilio_voice_from, "Twiml": TWIML, **extra}
        return await self.http.post(self.calls_path, data=data)

    async def created(self, **extra: Any) -> dict[str, Any]:
        response = await self.call(**extra)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    async def fetch(self, sid: str) -> dict[str, Any]:
        response = await self.http.get(self.calls_path.replace(".json", f"/{sid}.json"))
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def ended(self, sid: str) -> dict[str, Any]:
        """The call's admin record once its progress has run to the end."""

        async def record() -> dict[str, Any]:
            return next(c for c in await self.admin.calls() if c["sid"] == sid)

        return await eventually(
            record, until=lambda c: c["end_time"] is not None, what=f"call {sid} ended"
        )


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Sim]:
    settings = Settings(
        sim_twilio_callback_delay=0.01,
        sim_twilio_callback_backoff=0.01,
        sim_twilio_callback_timeout=2.0,
    )
    auth = (settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())
    async with (
        serve(settings) as base_url,
        SimTwilioAdmin(base_url) as admin,
        httpx.AsyncClient(base_url=base_url, auth=auth, timeout=10.0) as http,
    ):
        yield Sim(settings, admin, http, base_url)


def amd_request(receiver: Receiver) -> dict[str, Any]:
    """The AMD parameters the dispatcher sends, spelled as on Twilio's AMD page."""
    return {
        "MachineDetection": "DetectMessageEnd",
        "AsyncAmd": "true",
        "AsyncAmdStatusCallback": receiver.url("/amd?notification=7"),
        "AsyncAmdStatusCallbackMethod": "POST",
    }


def assert_signed(sim: Sim, callback: Callback) -> None:
    assert RequestValidator(sim.token).validate(callback.url, callback.form, callback.signature)
    pairs = list(callback.form.items())
    assert twilio_verify(sim.token, callback.url, pairs, callback.signature)


# --- answering machine detection ----------------------------------------------------------------


async def test_async_amd_posts_a_signed_verdict_carrying_the_faults_answered_by(
    sim: Sim, receiver: Receiver
) -> None:
    await sim.admin.inject(
        kind="final_status", api="calls", to=RECIPIENT, answered_by="machine_end_beep"
    )
    call = await sim.created(
        **amd_request(receiver),
        StatusCallback=receiver.url("/status"),
        StatusCallbackEvent=["answered", "completed"],
    )
    await sim.ended(call["sid"])

    [verdict] = receiver.on("/amd")
    assert verdict.url == receiver.url("/amd?notification=7")
    assert_signed(sim, verdict)
    assert list(verdict.form) == AMD_FIELDS
    assert verdict.form["AccountSid"] == sim.settings.twilio_account_sid
    assert verdict.form["CallSid"] == call["sid"]
    assert verdict.form["AnsweredBy"] == "machine_end_beep"
    assert int(verdict.form["MachineDetectionDuration"]) > 0
    # answered, then the verdict, then the end: the order of a real async AMD call
    assert [c.form.get("CallStatus", "amd") for c in receiver.received] == [
        "in-progress",
        "amd",
        "completed",
    ]
    fetched = await sim.fetch(call["sid"])
    assert (fetched["status"], fetched["answered_by"]) == ("completed", "machine_end_beep")
    errors = list(Draft202012Validator(CALL["response"]["schema"]).iter_errors(fetched))
    assert not errors, [e.message for e in errors]


async def test_async_amd_says_human_when_no_fault_decides(sim: Sim, receiver: Receiver) -> None:
    call = await sim.created(**{**amd_request(receiver), "MachineDetection": "Enable"})
    record = await sim.ended(call["sid"])
    [verdict] = receiver.on("/amd")
    assert verdict.form["AnsweredBy"] == "human"
    assert record["answered_by"] == "human"
    assert [c["status"] for c in record["callbacks"]] == ["amd"]
    assert record["callbacks"][0]["delivered"] is True


@pytest.mark.parametrize(
    ("drop", "answered_by"),
    [
        pytest.param("AsyncAmd", "fax", id="sync-amd-sets-the-resource-only"),
        pytest.param("MachineDetection", None, id="no-amd-no-verdict"),
    ],
)
async def test_no_verdict_is_posted_unless_amd_is_asynchronous(
    sim: Sim, receiver: Receiver, drop: str, answered_by: str | None
) -> None:
    await sim.admin.inject(kind="final_status", api="calls", answered_by="fax")
    request = {k: v for k, v in amd_request(receiver).items() if k != drop}
    call = await sim.created(**request, StatusCallback=receiver.url("/status"))
    record = await sim.ended(call["sid"])
    await eventually(lambda: len(receiver.received), until=lambda n: n == 1, what="completed")
    assert receiver.on("/amd") == []
    assert record["answered_by"] == answered_by
    assert record["faults_applied"]  # the fault was used up either way


# --- unanswered outcomes ------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed", "canceled"])
async def test_an_unanswered_call_rings_then_ends_with_the_injected_status(
    sim: Sim, receiver: Receiver, outcome: str
) -> None:
    await sim.admin.inject(kind="final_status", api="calls", to=RECIPIENT, status=outcome)
    call = await sim.created(
        **amd_request(receiver),
        StatusCallback=receiver.url("/status"),
        StatusCallbackEvent=["initiated", "ringing", "answered", "completed"],
    )
    record = await sim.ended(call["sid"])
    await eventually(lambda: len(receiver.received), until=lambda n: n >= 3, what="3 callbacks")

    assert [c.form["CallStatus"] for c in receiver.received] == ["initiated", "ringing", outcome]
    assert [c.form["SequenceNumber"] for c in receiver.received] == ["0", "1", "2"]
    for callback in receiver.received:
        assert_signed(sim, callback)
        assert callback.form["CallSid"] == call["sid"]
    last = receiver.received[-1].form
    assert (last["CallDuration"], last["Duration"]) == ("0", "0")
    assert receiver.on("/amd") == []  # never answered, so nothing to detect
    assert (record["status"], record["duration"], record["answered_by"]) == (outcome, "0", None)
    assert record["start_time"] is not None
    assert [c["status"] for c in record["callbacks"]] == ["initiated", "ringing", outcome]


@pytest.mark.parametrize("outcome", ["busy", "no-answer"])
async def test_the_default_completed_subscription_gets_the_unanswered_status(
    sim: Sim, receiver: Receiver, outcome: str
) -> None:
    await sim.admin.inject(kind="final_status", api="calls", status=outcome)
    call = await sim.created(StatusCallback=receiver.url("/status"))
    await sim.ended(call["sid"])
    await eventually(lambda: len(receiver.received), until=lambda n: n >= 1, what="a callback")
    [only] = receiver.received
    assert only.form["CallStatus"] == outcome
    assert only.form["SequenceNumber"] == "0"
    assert_signed(sim, only)


async def test_an_answered_call_without_faults_still_completes_with_its_duration(
    sim: Sim, receiver: Receiver
) -> None:
    call = await sim.created(StatusCallback=receiver.url("/status"))
    record = await sim.ended(call["sid"])
    await eventually(lambda: len(receiver.received), until=lambda n: n >= 1, what="a callback")
    [completed] = receiver.received
    seconds = str(sim.settings.sim_twilio_call_duration)
    assert (completed.form["CallStatus"], completed.form["CallDuration"]) == ("completed", seconds)
    assert (record["status"], record["duration"], record["answered_by"]) == (
        "completed",
        seconds,
        None,
    )


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        pytest.param({"api": "calls", "status": "delivered"}, "status", id="message-status-call"),
        pytest.param({"status": "busy"}, "status", id="call-status-message"),
        pytest.param({"api": "mail", "status": "no-answer"}, "status", id="call-status-mail"),
        pytest.param({"api": "calls", "answered_by": "robot"}, "answered_by", id="bad-verdict"),
        pytest.param(
            {"api": "calls", "status": "busy", "answered_by": "human"},
            "answered_by",
            id="verdict-on-unanswered-call",
        ),
        pytest.param({"status": "sent", "answered_by": "human"}, "answered_by", id="on-message"),
        pytest.param(
            {"api": "calls", "status": "failed", "error_code": 30008},
            "error_code",
            id="error-code-on-call",
        ),
    ],
)
async def test_final_status_faults_are_validated_per_api(
    sim: Sim, fault: dict[str, Any], problem: str
) -> None:
    with pytest.raises(httpx.HTTPStatusError) as error:
        await sim.admin.inject(kind="final_status", **fault)
    assert error.value.response.status_code == 400
    assert problem in error.value.response.json()["error"]
    assert await sim.admin.faults() == []


async def test_call_outcome_faults_default_to_completed_and_message_ones_are_unchanged(
    sim: Sim,
) -> None:
    call = await sim.admin.inject(kind="final_status", api="calls", answered_by="machine_start")
    assert (call["status"], call["answered_by"], call["error_code"]) == (
        "completed",
        "machine_start",
        None,
    )
    message = await sim.admin.inject(kind="final_status", status="undelivered", error_code=30003)
    assert (message["api"], message["status"], message["error_code"]) == (
        "messages",
        "undelivered",
        30003,
    )
    assert message["answered_by"] is None
    assert len(await sim.admin.faults()) == 2


# --- the call list ------------------------------------------------------------------------------


#: ``ListCall`` derived from Twilio's OpenAPI description (``make fixtures``; provenance inside).
LIST_CALL = json.loads(
    (Path(sim_twilio.__file__).parent / "openapi" / "list_call.json").read_text("utf-8")
)


def test_the_call_list_understands_exactly_the_documented_filters() -> None:
    assert LIST_CALL["provenance"]["operationId"] == "ListCall"
    documented = list(LIST_CALL["query_parameters"])
    assert tuple(documented) == LIST_QUERY_PARAMETERS
    assert "StartTime>" in documented  # the URL reads StartTime>=YYYY-MM-DD


async def test_list_calls_filters_by_to_and_pages_newest_first(sim: Sim) -> None:
    other = "+31687654321"
    mine = [(await sim.created())["sid"] for _ in range(3)]
    await sim.created(To=other)

    first = await sim.http.get(sim.calls_path, params={"To": RECIPIENT, "PageSize": "2"})
    assert first.status_code == 200, first.text
    page = first.json()
    assert [c["sid"] for c in page["calls"]] == [mine[2], mine[1]]
    assert (page["page"], page["page_size"], page["start"], page["end"]) == (0, 2, 0, 1)
    assert page["previous_page_uri"] is None
    assert page["next_page_uri"] is not None
    assert "To=%2B31612345678" in page["next_page_uri"]

    second = (await sim.http.get(page["next_page_uri"])).json()
    assert [c["sid"] for c in second["calls"]] == [mine[0]]
    assert (second["page"], second["next_page_uri"]) == (1, None)
    assert second["previous_page_uri"] is not None
    assert all(c["to"] == RECIPIENT for c in page["calls"] + second["calls"])

    schema = LIST_CALL["response"]["schema"]
    for body in (page, second):
        errors = list(Draft202012Validator(schema).iter_errors(body))
        assert not errors, [e.message for e in errors]


async def test_list_calls_filters_by_status_and_start_day(sim: Sim) -> None:
    await sim.admin.inject(kind="final_status", api="calls", status="no-answer")
    unanswered = await sim.created()
    answered = await sim.created()
    await sim.ended(unanswered["sid"])
    await sim.ended(answered["sid"])
    today = datetime.now(UTC).date()
    yesterday = (today - timedelta(days=1)).isoformat()

    by_status = await sim.http.get(sim.calls_path, params={"Status": "no-answer"})
    assert [c["sid"] for c in by_status.json()["calls"]] == [unanswered["sid"]]
    # as written by hand: ?StartTime>=YYYY-MM-DD
    since_today = await sim.http.get(f"{sim.calls_path}?StartTime>={today.isoformat()}")
    assert [c["sid"] for c in since_today.json()["calls"]] == [answered["sid"], unanswered["sid"]]
    before = await sim.http.get(sim.calls_path, params={"StartTime<": yesterday})
    assert before.json()["calls"] == []
    ended_today = await sim.http.get(sim.calls_path, params={"EndTime": today.isoformat()})
    assert len(ended_today.json()["calls"]) == 2

    refused = await sim.http.get(sim.calls_path, params={"Status": "no_answer"})
    assert refused.status_code == 400
    too_big = await sim.http.get(sim.calls_path, params={"PageSize": "1001"})
    assert too_big.status_code == 400


# --- Twiml --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "twiml",
    [
        pytest.param("Your invoice is overdue", id="plain-text"),
        pytest.param("<Say>Your invoice is overdue</Say>", id="no-Response-root"),
        pytest.param("<Response><Say>Your invoice</Response>", id="unclosed-element"),
        pytest.param("<Response><Say>Tom & Jerry</Say></Response>", id="unescaped-ampersand"),
        pytest.param(" <?xml version='1.0'?><Response/>", id="space-before-declaration"),
        pytest.param(
            '<!DOCTYPE r [<!ENTITY a "aaaa">]><Response>&a;</Response>', id="doctype-entity"
        ),
        pytest.param("<Response>" + "<Pause/>" * 500 + "</Response>", id="over-4000-chars"),
    ],
)
async def test_invalid_twiml_is_refused_with_21200_and_no_call_exists(sim: Sim, twiml: str) -> None:
    response = await sim.call(Twiml=twiml)
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["code"], body["status"]) == (21200, 400)
    assert "Twiml" in body["message"]
    assert await sim.admin.calls() == []


async def test_valid_twiml_is_accepted_and_kept_for_the_tests_to_read(sim: Sim) -> None:
    twiml = '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Say>Bel ons</Say></Response>'
    call = await sim.created(Twiml=twiml)
    [record] = await sim.admin.calls()
    assert (record["sid"], record["twiml"]) == (call["sid"], twiml)
    assert "twiml" not in call  # the Call resource has no such field


async def test_twiml_beside_a_url_is_ignored_as_the_spec_says(sim: Sim) -> None:
    await sim.created(Twiml="not TwiML", Url="https://example.com/twiml")
    [record] = await sim.admin.calls()
    assert record["twiml"] == "not TwiML"


# --- the twilio SDK as a client -----------------------------------------------------------------


class _ToSimulator(TwilioHttpClient):
    """The SDK's own HTTP client, sending what it meant for api.twilio.com to the simulator."""

    def __init__(self, base_url: str) -> None:
        super().__init__(timeout=10)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        return super().request(
            method, url.replace("https://api.twilio.com", self.base_url), *args, **kwargs
        )


async def test_the_twilio_sdk_places_an_amd_call_and_pages_through_the_list(
    sim: Sim, receiver: Receiver
) -> None:
    client = TwilioClient(
        sim.settings.twilio_account_sid, sim.token, http_client=_ToSimulator(sim.base_url)
    )
    await sim.admin.inject(kind="final_status", api="calls", answered_by="machine_end_silence")
    placed = await asyncio.to_thread(
        client.calls.create,
        to=RECIPIENT,
        from_=sim.settings.twilio_voice_from,
        twiml=TWIML,
        machine_detection="DetectMessageEnd",
        async_amd="true",
        async_amd_status_callback=receiver.url("/amd"),
        async_amd_status_callback_method="POST",
    )
    [recorded] = await sim.admin.calls()
    assert recorded["extra_params"] == []  # the SDK's names are all ones the simulator knows
    await sim.ended(placed.sid)
    [verdict] = receiver.on("/amd")
    assert verdict.form["AnsweredBy"] == "machine_end_silence"
    assert_signed(sim, verdict)
    fetched = await asyncio.to_thread(client.calls(placed.sid).fetch)
    assert fetched.answered_by == "machine_end_silence"

    more = [(await sim.created())["sid"] for _ in range(2)]
    listed = await asyncio.to_thread(
        client.calls.list,
        to=RECIPIENT,
        start_time_after=datetime(2000, 1, 1, tzinfo=UTC),
        page_size=2,
    )
    assert [c.sid for c in listed] == [more[1], more[0], placed.sid]
