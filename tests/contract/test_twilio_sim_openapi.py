"""The Twilio simulator against Twilio's OpenAPI description (via the committed fixtures).

Oracle: ``sim_twilio/openapi/create_message.json`` and ``create_call.json``, derived from
``../shared/twilio-oai/twilio_api_v2010.json`` by ``scripts/derive_twilio_fixture.py``. Requests
are generated from the fixture (every pattern, enum, type and format it states), and every 201
is validated against the fixture's response schema with jsonschema, independently of the
simulator's own checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from jsonschema import Draft202012Validator, FormatChecker

import sim_twilio
from common.testing import eventually
from sim_twilio.client import SimTwilioAdmin
from sim_twilio.server import serve
from sim_twilio.settings import Settings

pytestmark = pytest.mark.contract

ROOT = Path(__file__).resolve().parents[2]
OPENAPI = Path(sim_twilio.__file__).parent / "openapi"
MESSAGE = json.loads((OPENAPI / "create_message.json").read_text(encoding="utf-8"))
CALL = json.loads((OPENAPI / "create_call.json").read_text(encoding="utf-8"))
SPEC = ROOT.parent / "shared" / "twilio-oai" / "twilio_api_v2010.json"

#: A callback URL nothing listens on: deliveries fail fast and stay local.
DEAD_CALLBACK = "http://127.0.0.1:9/status"
RECIPIENT = "+31612345678"

#: Codes the simulator promises for a schema violation of these parameters; others get 400.
PARAM_CODES = {
    "To": 21211,
    "From": 21212,
    "MessagingServiceSid": 21705,
    "StatusCallback": 21609,
    "ValidityPeriod": 90007,
}

_RFC2822 = re.compile(r"^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000$")
_FORMATS = FormatChecker()


@_FORMATS.checks("date-time-rfc-2822", raises=(TypeError, ValueError))
def _is_rfc2822(value: object) -> bool:
    return not isinstance(value, str) or (
        bool(_RFC2822.match(value)) and parsedate_to_datetime(value) is not None
    )


def assert_resource(body: dict[str, Any], fixture: dict[str, Any]) -> None:
    """``body`` validates against the fixture's 201 schema and carries every property."""
    schema = fixture["response"]["schema"]
    errors = sorted(
        Draft202012Validator(schema, format_checker=_FORMATS).iter_errors(body), key=str
    )
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert set(schema["properties"]) <= set(body)


# --- generating requests from the fixture ---------------------------------------------------

_SID_PATTERN = re.compile(r"^\^\(?([A-Z]{2})")


def valid_value(name: str, schema: dict[str, Any]) -> list[str]:
    """Form values (one per repetition) that satisfy ``schema``."""
    if schema.get("type") == "array":
        return [valid_value(name, schema["items"])[0] for _ in range(2)]
    if "enum" in schema:
        return [str(schema["enum"][0])]
    if "pattern" in schema:
        prefix = _SID_PATTERN.match(schema["pattern"])
        assert prefix, f"no generator for pattern {schema['pattern']}"
        value = prefix.group(1) + "0123456789abcdef" * 2
        assert re.search(schema["pattern"], value)
        return [value]
    kind, fmt = schema.get("type"), schema.get("format")
    if kind == "integer":
        return ["60"]
    if kind == "number":
        return ["0.75"]
    if kind == "boolean":
        return ["false"]
    if fmt == "uri":
        return [DEAD_CALLBACK]
    if fmt == "date-time":
        return ["2030-01-02T03:04:05Z"]
    if fmt in ("phone-number", "endpoint"):
        return [RECIPIENT]
    return [f"{name} value"]


def invalid_values(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(what is broken, value) for each constraint the fixture states for one parameter."""
    found = []
    if "pattern" in schema:
        bad = "ZZ" + "0" * 32
        assert not re.search(schema["pattern"], bad)
        found.append(("pattern", bad))
    if "enum" in schema:
        found.append(("enum", "not-" + str(schema["enum"][0])))
    kind = schema.get("type")
    if kind in ("integer", "number"):
        found.append(("type", "twelve"))
    if kind == "boolean":
        found.append(("type", "maybe"))
    if schema.get("format") == "uri":
        found.append(("format", "not a url"))
    if schema.get("format") == "date-time":
        found.append(("format", "next tuesday"))
    if schema.get("format") == "phone-number":
        found.append(("format", "not a number!"))
    return found


def full_request(fixture: dict[str, Any]) -> dict[str, list[str]]:
    """Every parameter of the fixture with valid values (lists: httpx repeats the key)."""
    return {
        name: valid_value(name, schema) for name, schema in fixture["request"]["properties"].items()
    }


def base_message(settings: Settings) -> dict[str, str]:
    return {
        "To": RECIPIENT,
        "MessagingServiceSid": settings.twilio_messaging_service_sid,
        "Body": "Invoice 2024-001 is ready",
    }


VIOLATIONS = [
    pytest.param(name, value, id=f"{name}-{what}")
    for name, schema in MESSAGE["request"]["properties"].items()
    for what, value in invalid_values(schema)
]


# --- simulator fixture ------------------------------------------------------------------------


@dataclass
class Sim:
    settings: Settings
    admin: SimTwilioAdmin
    http: httpx.AsyncClient

    @property
    def messages_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.settings.twilio_account_sid}/Messages.json"

    @property
    def calls_path(self) -> str:
        return f"/2010-04-01/Accounts/{self.settings.twilio_account_sid}/Calls.json"


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Sim]:
    settings = Settings(
        sim_twilio_callback_delay=0.01,
        sim_twilio_callback_attempts=1,
        sim_twilio_callback_timeout=1.0,
    )
    auth = (settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())
    async with (
        serve(settings) as base_url,
        SimTwilioAdmin(base_url) as admin,
        httpx.AsyncClient(base_url=base_url, auth=auth, timeout=10.0) as http,
    ):
        yield Sim(settings, admin, http)


# --- the fixture itself -----------------------------------------------------------------------


def test_the_fixture_describes_create_message_with_its_provenance() -> None:
    provenance = MESSAGE["provenance"]
    assert provenance["operationId"] == "CreateMessage"
    assert re.fullmatch(r"[0-9a-f]{64}", provenance["sha256"])
    assert provenance["source_path"] == "spec/json/twilio_api_v2010.json"
    params = set(MESSAGE["request"]["properties"])
    assert {"To", "From", "MessagingServiceSid", "Body", "MediaUrl", "ContentSid"} <= params
    assert {"StatusCallback", "ValidityPeriod", "SendAt", "ScheduleType"} <= params
    assert MESSAGE["request"]["required"] == ["To"]
    assert MESSAGE["request"]["properties"]["MediaUrl"]["type"] == "array"
    assert MESSAGE["conditional"]["params"] == [
        ["From", "MessagingServiceSid"],
        ["Body", "MediaUrl", "ContentSid"],
    ]
    status = MESSAGE["response"]["schema"]["properties"]["status"]
    assert {"queued", "accepted", "sent", "delivered", "undelivered", "failed"} <= set(
        status["enum"]
    )
    assert CALL["provenance"]["operationId"] == "CreateCall"
    assert CALL["request"]["required"] == ["To", "From"]
    assert CALL["conditional"]["params"] == [["Url", "Twiml", "ApplicationSid"]]


# --- requests ---------------------------------------------------------------------------------


async def test_a_request_with_every_fixture_parameter_is_accepted(sim: Sim) -> None:
    response = await sim.http.post(sim.messages_path, data=full_request(MESSAGE))
    assert response.status_code == 201, response.text
    body = response.json()
    assert_resource(body, MESSAGE)
    assert body["status"] == "accepted"  # a Messaging Service is named
    assert body["sid"].startswith("MM")  # MediaUrl makes it an MMS
    assert body["num_media"] == "2"


async def test_a_minimal_request_gets_the_full_resource(sim: Sim) -> None:
    response = await sim.http.post(sim.messages_path, data=base_message(sim.settings))
    assert response.status_code == 201, response.text
    body = response.json()
    assert_resource(body, MESSAGE)
    assert body["status"] == "accepted"
    assert body["from"] is None
    assert body["num_segments"] == "0"
    assert body["direction"] == "outbound-api"
    assert body["api_version"] == "2010-04-01"
    assert body["uri"] == f"{sim.messages_path[:-5]}/{body['sid']}.json"
    assert (body["price"], body["error_code"], body["date_sent"]) == (None, None, None)


async def test_a_request_with_from_is_queued_with_its_segments(sim: Sim) -> None:
    data = {"To": RECIPIENT, "From": "+15005550006", "Body": "€" * 81}
    response = await sim.http.post(sim.messages_path, data=data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert_resource(body, MESSAGE)
    assert (body["status"], body["from"], body["messaging_service_sid"]) == (
        "queued",
        "+15005550006",
        None,
    )
    assert body["num_segments"] == "2"  # 81 extension characters are 162 septets


async def test_fetch_and_list_return_resources_that_match_the_schema(sim: Sim) -> None:
    created = (await sim.http.post(sim.messages_path, data=base_message(sim.settings))).json()
    fetch_path = f"{sim.messages_path[:-5]}/{created['sid']}.json"

    async def status() -> str:
        return (await sim.http.get(fetch_path)).json()["status"]

    await eventually(status, until=lambda s: s == "delivered", what="delivered status")
    fetched = (await sim.http.get(fetch_path)).json()
    assert_resource(fetched, MESSAGE)
    assert fetched["from"] == sim.settings.sim_twilio_pool_sender
    assert fetched["date_sent"] is not None
    listed = (
        await sim.http.get(sim.messages_path, params={"To": RECIPIENT, "DateSent>": "2000-01-01"})
    ).json()
    assert [m["sid"] for m in listed["messages"]] == [created["sid"]]
    for message in listed["messages"]:
        assert_resource(message, MESSAGE)
    assert {"page", "page_size", "uri", "next_page_uri", "first_page_uri"} <= set(listed)
    empty = await sim.http.get(sim.messages_path, params={"DateSent>": "2999-01-01"})
    assert empty.json()["messages"] == []
    missing = await sim.http.get(f"{sim.messages_path[:-5]}/SM{'0' * 32}.json")
    assert missing.status_code == 404
    assert missing.json()["code"] == 20404


@pytest.mark.parametrize(("name", "value"), VIOLATIONS)
async def test_a_value_that_breaks_the_fixture_is_refused(sim: Sim, name: str, value: str) -> None:
    data = {**base_message(sim.settings), name: value}
    response = await sim.http.post(sim.messages_path, data=data)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == PARAM_CODES.get(name, 400)
    if body["code"] == 400:  # the generic code names the parameter
        assert body["message"] == f"Invalid parameter: {name}"
    assert body["status"] == 400
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{body['code']}"
    assert body["message"]
    assert await sim.admin.messages() == []


async def test_a_json_body_is_refused_as_twilio_does(sim: Sim) -> None:
    response = await sim.http.post(sim.messages_path, json=base_message(sim.settings))
    assert response.status_code == 400
    assert response.json()["code"] == 21604
    assert await sim.admin.messages() == []
    [recorded] = await sim.admin.requests("Messages.json")
    assert recorded["json"] == base_message(sim.settings)
    assert recorded["form"] is None


@pytest.mark.parametrize(
    ("drop", "code"),
    [
        pytest.param(["To"], 21604, id="no-To"),
        pytest.param(["MessagingServiceSid"], 21603, id="no-From-nor-MessagingServiceSid"),
        pytest.param(["Body"], 21602, id="no-Body-MediaUrl-ContentSid"),
    ],
)
async def test_required_and_conditional_parameters_are_enforced(
    sim: Sim, drop: list[str], code: int
) -> None:
    data = {k: v for k, v in base_message(sim.settings).items() if k not in drop}
    response = await sim.http.post(sim.messages_path, data=data)
    assert response.status_code == 400
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    "alternative",
    [
        pytest.param({"From": "+15005550006"}, id="From"),
        pytest.param({"MediaUrl": "https://example.com/invoice.png"}, id="MediaUrl"),
        pytest.param({"ContentSid": "HX" + "ab" * 16}, id="ContentSid"),
    ],
)
async def test_any_member_of_a_conditional_group_satisfies_it(
    sim: Sim, alternative: dict[str, str]
) -> None:
    data = {"To": RECIPIENT, "MessagingServiceSid": sim.settings.twilio_messaging_service_sid}
    if "From" in alternative:
        data = {"To": RECIPIENT, "Body": "hello"}
    response = await sim.http.post(sim.messages_path, data={**data, **alternative})
    assert response.status_code == 201, response.text
    assert_resource(response.json(), MESSAGE)


async def test_unknown_parameters_are_accepted_and_recorded(sim: Sim) -> None:
    data = {**base_message(sim.settings), "Tags": '{"campaign": "invoices"}'}
    response = await sim.http.post(sim.messages_path, data=data)
    assert response.status_code == 201
    [message] = await sim.admin.messages()
    assert message["extra_params"] == [["Tags", '{"campaign": "invoices"}']]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param({"Body": "x" * 1601}, 21617, id="Body-over-1600"),
        pytest.param({"ValidityPeriod": "0"}, 90007, id="ValidityPeriod-below-1"),
        pytest.param({"ValidityPeriod": "36001"}, 90007, id="ValidityPeriod-above-36000"),
        pytest.param({"To": "ACME"}, 21211, id="To-is-a-sender-id"),
        pytest.param({"StatusCallback": "https://bad_host.example.com/cb"}, 21609, id="cb-host"),
    ],
)
async def test_documented_limits_outside_the_schema_are_enforced(
    sim: Sim, data: dict[str, str], code: int
) -> None:
    response = await sim.http.post(sim.messages_path, data={**base_message(sim.settings), **data})
    assert response.status_code == 400
    assert response.json()["code"] == code


@pytest.mark.parametrize(
    ("field", "number", "code"),
    [
        ("To", "+15005550001", 21211),
        ("To", "+15005550002", 21612),
        ("To", "+15005550003", 21408),
        ("To", "+15005550004", 21610),
        ("To", "+15005550009", 21614),
        ("From", "+15005550001", 21212),
        ("From", "+15005550007", 21606),
        ("From", "+15005550008", 21611),
    ],
)
async def test_magic_test_numbers_give_their_errors(
    sim: Sim, field: str, number: str, code: int
) -> None:
    data = {"To": RECIPIENT, "From": "+15005550006", "Body": "hello", field: number}
    response = await sim.http.post(sim.messages_path, data=data)
    assert response.status_code == 400
    assert response.json()["code"] == code


# --- calls ------------------------------------------------------------------------------------


async def test_a_call_built_from_the_fixture_is_accepted(sim: Sim) -> None:
    data = {k: v for k, v in full_request(CALL).items() if k not in ("Twiml", "ApplicationSid")}
    data["StatusCallbackEvent"] = ["initiated", "completed"]
    response = await sim.http.post(sim.calls_path, data=data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert_resource(body, CALL)
    assert body["status"] == "queued"
    assert re.fullmatch(r"CA[0-9a-f]{32}", body["sid"])


@pytest.mark.parametrize(
    ("drop", "code"),
    [
        pytest.param(["To"], 21201, id="no-To"),
        pytest.param(["From"], 21213, id="no-From"),
        pytest.param(["Twiml"], 21200, id="no-Url-Twiml-ApplicationSid"),
    ],
)
async def test_call_required_and_conditional_parameters_are_enforced(
    sim: Sim, drop: list[str], code: int
) -> None:
    data = {"To": RECIPIENT, "From": "+15005550006", "Twiml": "<Response><Say>Hi</Say></Response>"}
    response = await sim.http.post(
        sim.calls_path, data={k: v for k, v in data.items() if k not in drop}
    )
    assert response.status_code == 400
    assert response.json()["code"] == code


async def test_an_unknown_call_progress_event_is_refused(sim: Sim) -> None:
    data = {
        "To": RECIPIENT,
        "From": "+15005550006",
        "Url": "https://example.com/twiml",
        "StatusCallbackEvent": ["answered", "hangup"],
    }
    response = await sim.http.post(sim.calls_path, data=data)
    assert response.status_code == 400
    assert response.json()["code"] == 21626
