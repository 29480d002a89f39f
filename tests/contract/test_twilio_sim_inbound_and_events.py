"""The Twilio simulator plays SendGrid's signed Event Webhook after an accepted mail, and
inbound SMS to a number's webhook, the way the vendors post them. Checked with independent
oracles: SendGrid's ECDSA scheme (``common.signatures.sendgrid_verify``, itself pinned to
sendgrid-python's vector) and the twilio SDK's ``RequestValidator``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from twilio.request_validator import RequestValidator

from common.health import serve as serve_app
from common.settings import SIMULATOR_DEFAULTS
from common.signatures import sendgrid_verify
from sim_twilio.server import serve
from sim_twilio.settings import Settings

pytestmark = pytest.mark.contract

KEY = str(SIMULATOR_DEFAULTS["sendgrid_webhook_public_key"])


@dataclass
class Receiver:
    """A webhook receiver on a free loopback port that keeps what it got."""

    url: str = ""
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.posts.append((dict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(text="<Response></Response>", content_type="text/xml")

    async def wait_for(self, count: int) -> None:
        async def enough() -> None:
            while len(self.posts) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout=10)


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[tuple[httpx.AsyncClient, Receiver, Settings]]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    async with serve_app(app, "127.0.0.1", 0) as port:
        receiver.url = f"http://127.0.0.1:{port}/hook"
        settings = Settings(
            sim_twilio_event_webhook_url=receiver.url,
            sim_twilio_inbound_url=receiver.url,
            sim_twilio_callback_delay=0.01,
        )
        async with serve(settings) as base_url, httpx.AsyncClient(base_url=base_url) as http:
            yield http, receiver, settings


def mail(to: str) -> dict:
    return {
        "personalizations": [{"to": [{"email": to}]}],
        "from": {"email": "billing@example.com"},
        "subject": "Invoice",
        "content": [{"type": "text/plain", "value": "Invoice 2026-001"}],
        "custom_args": {"mlc_notification_id": "nid-1", "email": "must-not-win@example.com"},
    }


async def send(http: httpx.AsyncClient, settings: Settings, to: str) -> str:
    answer = await http.post(
        "/v3/mail/send",
        json=mail(to),
        headers={"Authorization": f"Bearer {settings.sendgrid_api_key.get_secret_value()}"},
    )
    assert answer.status_code == 202
    return answer.headers["X-Message-Id"]


def verified_events(posts: list[tuple[dict[str, str], bytes]]) -> list[dict]:
    events = []
    for headers, body in posts:
        assert sendgrid_verify(
            KEY,
            body,
            headers["X-Twilio-Email-Event-Webhook-Signature"],
            headers["X-Twilio-Email-Event-Webhook-Timestamp"],
        )
        events += json.loads(body)
    return events


async def test_an_accepted_mail_is_followed_by_signed_processed_and_delivered_events(sim):
    http, receiver, settings = sim
    message_id = await send(http, settings, "finance@example.org")
    await receiver.wait_for(2)
    events = verified_events(receiver.posts)
    assert [e["event"] for e in events] == ["processed", "delivered"]
    assert all(e["sg_message_id"].split(".")[0] == message_id for e in events)
    assert all(e["mlc_notification_id"] == "nid-1" for e in events)
    assert all(e["email"] == "finance@example.org" for e in events)  # reserved keys win
    assert len({e["sg_event_id"] for e in events}) == 2


async def test_an_undeliverable_mail_hard_bounces(sim):
    http, receiver, settings = sim
    await http.post(
        "/_sim/faults", json={"kind": "final_status", "api": "mail", "status": "undelivered"}
    )
    await send(http, settings, "nobody@example.org")
    await receiver.wait_for(2)
    bounce = verified_events(receiver.posts)[-1]
    assert bounce["event"] == "bounce"
    assert bounce["type"] == "bounce"


async def test_an_inbound_sms_is_posted_signed_as_twilio_posts_it(sim):
    http, receiver, settings = sim
    answer = await http.post(
        "/_sim/inbound", json={"from": "+31612345678", "to": "+3197010000000", "body": "Hallo"}
    )
    assert answer.status_code == 200
    assert answer.json()["webhook_status"] == 200
    headers, body = receiver.posts[0]
    form = dict(pair.split("=", 1) for pair in body.decode().split("&"))
    params = {k: httpx.QueryParams(f"v={v}")["v"] for k, v in form.items()}
    validator = RequestValidator(settings.twilio_auth_token.get_secret_value())
    assert validator.validate(receiver.url, params, headers["X-Twilio-Signature"])
    assert params["From"] == "+31612345678"
    assert params["MessageSid"].startswith("SM")


async def test_a_stop_reply_makes_the_next_send_to_that_number_fail_with_21610(sim):
    http, _, settings = sim
    number = "+31612340000"
    auth = (settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())
    path = f"/2010-04-01/Accounts/{settings.twilio_account_sid}/Messages.json"
    form = {"To": number, "From": "+15005550006", "Body": "Invoice 2026-002"}
    assert (await http.post(path, data=form, auth=auth)).status_code == 201
    await http.post("/_sim/inbound", json={"from": number, "to": "+15005550006", "body": "STOP"})
    refused = await http.post(path, data=form, auth=auth)
    assert refused.status_code == 400
    assert refused.json()["code"] == 21610
    await http.post("/_sim/inbound", json={"from": number, "to": "+15005550006", "body": "START"})
    assert (await http.post(path, data=form, auth=auth)).status_code == 201
