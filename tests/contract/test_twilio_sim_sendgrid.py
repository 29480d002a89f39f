"""The simulator's SendGrid ``POST /v3/mail/send`` against SendGrid's documented contract:
Bearer auth, JSON body with ``personalizations[].to[]`` and ``from``, 202 with
``X-Message-Id`` and no body, errors as ``{"errors": [{"message", "field", "help"}]}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from sim_twilio.client import SimTwilioAdmin
from sim_twilio.server import serve
from sim_twilio.settings import Settings

pytestmark = pytest.mark.contract

MAIL = {
    "personalizations": [{"to": [{"email": "finance@example.org"}], "subject": "Invoice"}],
    "from": {"email": "billing@example.com", "name": "Billing"},
    "content": [{"type": "text/plain", "value": "Invoice 2024-001 is ready."}],
    "custom_args": {"mlc_dispatch_id": "5b0f6e0a-0000-4000-8000-000000000001"},
}


@pytest_asyncio.fixture
async def mail() -> AsyncIterator[tuple[httpx.AsyncClient, SimTwilioAdmin]]:
    settings = Settings()
    headers = {"Authorization": f"Bearer {settings.sendgrid_api_key.get_secret_value()}"}
    async with (
        serve(settings) as base_url,
        SimTwilioAdmin(base_url) as admin,
        httpx.AsyncClient(base_url=base_url, headers=headers) as http,
    ):
        yield http, admin


def assert_sendgrid_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    [error] = response.json()["errors"]
    assert set(error) == {"message", "field", "help"}
    assert error["message"]
    return error  # type: ignore[no-any-return]


async def test_a_valid_mail_is_accepted_with_a_message_id(
    mail: tuple[httpx.AsyncClient, SimTwilioAdmin],
) -> None:
    http, admin = mail
    response = await http.post("/v3/mail/send", json=MAIL)
    assert response.status_code == 202
    assert response.content == b""
    message_id = response.headers["X-Message-Id"]
    assert message_id
    [recorded] = await admin.emails()
    assert recorded["message_id"] == message_id
    assert recorded["to"] == ["finance@example.org"]
    assert recorded["custom_args"] == MAIL["custom_args"]


@pytest.mark.parametrize(
    "authorization", ["Bearer SG.wrong", "Basic c2c6c2c=", ""], ids=["wrong", "basic", "none"]
)
async def test_a_wrong_api_key_gets_401(
    mail: tuple[httpx.AsyncClient, SimTwilioAdmin], authorization: str
) -> None:
    http, admin = mail
    response = await http.post("/v3/mail/send", json=MAIL, headers={"Authorization": authorization})
    error = assert_sendgrid_error(response, 401)
    assert (error["field"], error["help"]) == (None, None)
    assert await admin.emails() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {k: v for k, v in MAIL.items() if k != "personalizations"},
            "personalizations",
            id="no-personalizations",
        ),
        pytest.param({**MAIL, "personalizations": []}, "personalizations", id="empty"),
        pytest.param(
            {**MAIL, "personalizations": [{"subject": "x"}]}, "personalizations.0.to", id="no-to"
        ),
        pytest.param(
            {**MAIL, "personalizations": [{"to": [{"name": "x"}]}]},
            "personalizations.0.to",
            id="to-without-email",
        ),
        pytest.param({k: v for k, v in MAIL.items() if k != "from"}, "from.email", id="no-from"),
    ],
)
async def test_a_malformed_mail_gets_400_naming_the_field(
    mail: tuple[httpx.AsyncClient, SimTwilioAdmin], body: dict[str, Any], field: str
) -> None:
    http, admin = mail
    error = assert_sendgrid_error(await http.post("/v3/mail/send", json=body), 400)
    assert error["field"] == field
    assert await admin.emails() == []


async def test_a_non_json_body_gets_400(mail: tuple[httpx.AsyncClient, SimTwilioAdmin]) -> None:
    http, _ = mail
    response = await http.post("/v3/mail/send", data={"to": "finance@example.org"})
    assert_sendgrid_error(response, 400)


async def test_mail_faults_apply(mail: tuple[httpx.AsyncClient, SimTwilioAdmin]) -> None:
    http, admin = mail
    await admin.inject(kind="http_429", api="mail", count=1)
    assert_sendgrid_error(await http.post("/v3/mail/send", json=MAIL), 429)
    assert (await http.post("/v3/mail/send", json=MAIL)).status_code == 202
    assert [r["status"] for r in await admin.requests("/v3/mail/send")] == [429, 202]
