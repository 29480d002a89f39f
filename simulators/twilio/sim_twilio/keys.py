"""Typed keys of the simulator's application state (``app[STATE]`` and friends)."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from sim_twilio.metrics import Metrics
from sim_twilio.settings import Settings
from sim_twilio.state import SimState
from sim_twilio.validation import Operation

__all__ = [
    "CREATE_CALL",
    "CREATE_MESSAGE",
    "LIST_MESSAGE",
    "METRICS",
    "SESSION",
    "SETTINGS",
    "STATE",
]

SETTINGS = web.AppKey("sim_twilio.settings", Settings)
STATE = web.AppKey("sim_twilio.state", SimState)
METRICS = web.AppKey("sim_twilio.metrics", Metrics)
#: The client that posts status callbacks; opened and closed by the app's cleanup context.
SESSION = web.AppKey("sim_twilio.session", aiohttp.ClientSession)
CREATE_MESSAGE = web.AppKey("sim_twilio.create_message", Operation)
CREATE_CALL = web.AppKey("sim_twilio.create_call", Operation)
#: The ListMessage fixture (query parameters and page schema) derived from the OpenAPI file.
LIST_MESSAGE = web.AppKey("sim_twilio.list_message", dict)
