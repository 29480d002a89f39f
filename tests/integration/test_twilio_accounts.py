"""A company's own Twilio account sends its notifications; everyone else uses the install's.
Checked at the Twilio simulator and at ingress, which verifies that account's callbacks."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from common.contracts import ChannelCredentials
from common.settings import ServiceSettings
from dispatcher.adapters.accounts import TwilioAccounts
from dispatcher.adapters.http import HttpClient
from dispatcher.adapters.twilio import TwilioNotifier
from sim_twilio.client import SimTwilioAdmin
from sim_twilio.server import serve
from sim_twilio.settings import Settings as SimSettings

pytestmark = pytest.mark.integration

OWN_SERVICE = "MG" + "f" * 32


class FakeLookup:
    def __init__(self, settings: ServiceSettings) -> None:
        self.own = ChannelCredentials(
            connection_id="acme",
            twilio_account_sid=settings.twilio_account_sid,
            twilio_auth_token=SecretStr(settings.twilio_auth_token.get_secret_value()),
            twilio_messaging_service_sid=OWN_SERVICE,
        )

    async def get(self, connection_id: str) -> ChannelCredentials:
        return (
            self.own if connection_id == "acme" else ChannelCredentials(connection_id=connection_id)
        )


async def test_each_connection_sends_from_its_own_account_or_the_default():
    settings = ServiceSettings(public_base_url="https://hooks.example.com")
    async with (
        serve(SimSettings(http_port=0)) as url,
        HttpClient(url) as http,
        SimTwilioAdmin(url) as admin,
    ):
        notifier = TwilioNotifier(http, TwilioAccounts(settings, FakeLookup(settings)))
        await notifier.send_sms("+31612345678", "own account", connection_id="acme")
        await notifier.send_sms("+31612345679", "default account", connection_id="default")
        sent = {
            dict(r["form"])["Body"]: dict(r["form"])
            for r in await admin.requests("Messages.json")
            if r["method"] == "POST"
        }
    assert sent["own account"]["MessagingServiceSid"] == OWN_SERVICE
    assert sent["own account"]["StatusCallback"] == (
        "https://hooks.example.com/webhooks/twilio/status?connection=acme"
    )
    assert sent["default account"]["MessagingServiceSid"] == settings.twilio_messaging_service_sid
    assert sent["default account"]["StatusCallback"] == (
        "https://hooks.example.com/webhooks/twilio/status"
    )
