"""Inbound SMS, as Twilio delivers them to a number's incoming-message webhook.

``POST /_sim/inbound`` (admin, JSON ``{"from", "to", "body"}``, optional
``"messaging_service_sid"``) plays a recipient texting one of our numbers: the simulator posts
the signed form Twilio posts (``MessageSid``, ``AccountSid``, ``From``, ``To``, ``Body``,
``NumMedia``...) to ``MLC_SIM_TWILIO_INBOUND_URL`` and answers with what that webhook said.

Twilio's default opt-out handling is played too: a body that is exactly one of Twilio's
English STOP keywords blocklists the sender for the account (``opted_out``), and a START
keyword lifts it; a message created to a blocklisted number then fails with 21610.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from common.signatures import twilio_signature
from sim_twilio.keys import SESSION, SETTINGS, STATE
from sim_twilio.resources import API_VERSION, new_sid

__all__ = ["START_WORDS", "STOP_WORDS", "inject_inbound"]

#: Twilio's default keywords (shared/reference twilio.md section 5).
STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
START_WORDS = frozenset({"START", "YES", "UNSTOP"})


async def inject_inbound(request: web.Request) -> web.Response:
    settings, state = request.app[SETTINGS], request.app[STATE]
    spec = await request.json()
    sender, to, body = spec.get("from"), spec.get("to"), spec.get("body", "")
    if not isinstance(sender, str) or not isinstance(to, str) or not isinstance(body, str):
        return web.json_response({"error": "from, to and body are needed"}, status=400)
    word = body.strip().upper()
    if word in STOP_WORDS:
        state.opted_out.add(sender)
    elif word in START_WORDS:
        state.opted_out.discard(sender)
    url = settings.sim_twilio_inbound_url
    if not url:
        return web.json_response({"error": "MLC_SIM_TWILIO_INBOUND_URL is not set"}, status=409)
    params = [
        ("MessageSid", new_sid("SM")),
        ("SmsSid", ""),
        ("AccountSid", settings.twilio_account_sid),
        ("From", sender),
        ("To", to),
        ("Body", body),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("ApiVersion", API_VERSION),
    ]
    params[1] = ("SmsSid", params[0][1])
    if spec.get("messaging_service_sid"):
        params.append(("MessagingServiceSid", str(spec["messaging_service_sid"])))
    token = settings.twilio_auth_token.get_secret_value()
    headers = {"X-Twilio-Signature": twilio_signature(token, url, params)}
    try:
        async with request.app[SESSION].post(url, data=params, headers=headers) as answer:
            text = await answer.text()
            status = answer.status
    except aiohttp.ClientError as exc:
        return web.json_response({"error": type(exc).__name__}, status=502)
    return web.json_response(
        {"message_sid": params[0][1], "webhook_status": status, "webhook_body": text[:500]}
    )
