"""Composition root: ``create_app(settings)`` wires state, metrics, the callback client and the
routes into one aiohttp application. Nothing is opened before the app starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from sim_twilio import account, admin, calls, messages, sendgrid
from sim_twilio.keys import (
    CREATE_CALL,
    CREATE_MESSAGE,
    LIST_MESSAGE,
    METRICS,
    SESSION,
    SETTINGS,
    STATE,
)
from sim_twilio.metrics import Metrics
from sim_twilio.observe import observe
from sim_twilio.settings import Settings
from sim_twilio.state import SimState
from sim_twilio.validation import load_fixture, load_operation

__all__ = ["create_app"]

_ACCOUNT = "/2010-04-01/Accounts/{AccountSid}"
_SID = "[A-Za-z0-9]+"


async def _callback_client(app: web.Application) -> AsyncIterator[None]:
    """The HTTP client for status callbacks, and the end of background work at shutdown."""
    async with aiohttp.ClientSession() as session:
        app[SESSION] = session
        yield
        await app[STATE].cancel_tasks()


async def _release_held_responses(app: web.Application) -> None:
    """Answer requests held back by ``timeout`` faults so that shutdown does not wait."""
    app[STATE].released.set()


def create_app(settings: Settings) -> web.Application:
    """The simulator as an aiohttp application (run it with ``web.run_app`` or a runner)."""
    app = web.Application(middlewares=[observe])
    app[SETTINGS] = settings
    app[STATE] = SimState()
    app[METRICS] = Metrics.create()
    app[CREATE_MESSAGE] = load_operation("create_message")
    app[CREATE_CALL] = load_operation("create_call")
    app[LIST_MESSAGE] = load_fixture("list_message")
    app.cleanup_ctx.append(_callback_client)
    app.on_shutdown.append(_release_held_responses)
    app.router.add_post(f"{_ACCOUNT}/Messages.json", messages.create_message)
    app.router.add_get(f"{_ACCOUNT}/Messages.json", messages.list_messages)
    app.router.add_get(f"{_ACCOUNT}/Messages/{{MessageSid:{_SID}}}.json", messages.fetch_message)
    app.router.add_post(f"{_ACCOUNT}/Calls.json", calls.create_call)
    app.router.add_get(f"{_ACCOUNT}/Calls.json", calls.list_calls)
    app.router.add_get(f"{_ACCOUNT}/Calls/{{CallSid:{_SID}}}.json", calls.fetch_call)
    app.router.add_post("/v3/mail/send", sendgrid.send_mail)
    app.router.add_get(f"{_ACCOUNT}.json", account.fetch_account)
    app.router.add_get("/v1/Services/{ServiceSid}", account.fetch_service)
    app.router.add_get("/v3/scopes", account.sendgrid_scopes)
    app.router.add_routes(admin.routes)
    return app
