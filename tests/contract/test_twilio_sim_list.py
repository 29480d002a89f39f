"""The simulator's message list, the lookup that settles unsettled sends, against Twilio's
OpenAPI description (``sim_twilio/openapi/list_message.json``, derived by
``scripts/derive_twilio_fixture.py`` from operation ``ListMessage``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from jsonschema import Draft202012Validator

import sim_twilio
from common.settings import ServiceSettings
from sim_twilio.messages import LIST_QUERY_PARAMETERS
from sim_twilio.server import serve
from sim_twilio.settings import Settings

pytestmark = pytest.mark.contract

LIST = json.loads(
    (Path(sim_twilio.__file__).parent / "openapi" / "list_message.json").read_text("utf-8")
)
TO = "+31633330001"


def test_the_simulator_understands_exactly_the_documented_list_filters():
    assert LIST["provenance"]["operationId"] == "ListMessage"
    assert tuple(LIST["query_parameters"]) == LIST_QUERY_PARAMETERS
    assert "DateSent>" in LIST["query_parameters"]  # the URL reads DateSent>=YYYY-MM-DD


async def test_list_filters_by_recipient_and_sent_day_and_pages_as_documented():
    defaults = ServiceSettings()
    async with (
        serve(Settings(http_port=0)) as url,
        httpx.AsyncClient(base_url=url, auth=defaults.twilio_credentials()) as http,
    ):
        path = f"/2010-04-01/Accounts/{defaults.twilio_account_sid}/Messages.json"
        form = {
            "To": TO,
            "Body": "lookup me",
            "MessagingServiceSid": defaults.twilio_messaging_service_sid,
            "StatusCallback": "http://127.0.0.1:9/status",
        }
        created = (await http.post(path, data=form)).json()
        today = datetime.now(UTC).date()
        yesterday = (today - timedelta(days=1)).isoformat()
        # as a client writes it by hand: ?To=...&DateSent>=YYYY-MM-DD
        found = await http.get(f"{path}?To=%2B{TO[1:]}&DateSent>={today.isoformat()}")
        assert found.status_code == 200
        page = found.json()
        errors = list(Draft202012Validator(LIST["response"]["schema"]).iter_errors(page))
        assert not errors, [e.message for e in errors]
        assert [m["sid"] for m in page["messages"]] == [created["sid"]]
        before = await http.get(path, params={"To": TO, "DateSent<": yesterday})
        assert before.json()["messages"] == []
        other = await http.get(path, params={"To": "+31633330002"})
        assert other.json()["messages"] == []
        bounds = LIST["query_parameters"]["PageSize"]
        for size in (bounds["minimum"] - 1, bounds["maximum"] + 1):
            refused = await http.get(path, params={"PageSize": str(size)})
            assert refused.status_code == 400
