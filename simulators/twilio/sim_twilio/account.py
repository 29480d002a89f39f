"""Credential checks an operator's ``mlc ping`` makes: fetch the account, the Messaging Service
and SendGrid's key scopes. Read-only, same auth rules as the sending endpoints.

- ``GET /2010-04-01/Accounts/{AccountSid}.json`` (api.twilio.com)
- ``GET /v1/Services/{ServiceSid}`` (messaging.twilio.com)
- ``GET /v3/scopes`` (api.sendgrid.com)
"""

from __future__ import annotations

from aiohttp import web

from sim_twilio.auth import check_account, check_account_resource, check_basic, check_bearer
from sim_twilio.errors import TwilioError
from sim_twilio.keys import SETTINGS

__all__ = ["fetch_account", "fetch_service", "sendgrid_scopes"]


async def fetch_account(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_basic(request, settings)
    check_account(request, settings)
    check_account_resource(request, settings)
    sid = settings.twilio_account_sid
    return web.json_response(
        {
            "sid": sid,
            "friendly_name": "Simulated account",
            "status": "active",
            "type": "Full",
            "uri": f"/2010-04-01/Accounts/{sid}.json",
        }
    )


async def fetch_service(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_basic(request, settings)
    sid = request.match_info["ServiceSid"]
    if sid != settings.twilio_messaging_service_sid:
        raise TwilioError(20404, path=request.path)
    return web.json_response(
        {
            "sid": sid,
            "account_sid": settings.twilio_account_sid,
            "friendly_name": "Simulated notifications",
            "url": f"/v1/Services/{sid}",
        }
    )


async def sendgrid_scopes(request: web.Request) -> web.Response:
    check_bearer(request, request.app[SETTINGS])
    return web.json_response({"scopes": ["mail.send"]})
