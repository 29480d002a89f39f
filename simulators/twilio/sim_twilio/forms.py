"""Reading request bodies as the vendors do: form fields as ordered (name, value) pairs.

Twilio reads only ``application/x-www-form-urlencoded`` bodies. Any other body (JSON included)
yields no parameters at all, which is why a JSON request to Messages.json is answered with
21604 "To is required" (twilio.com/docs/errors/21604).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

__all__ = ["FORM", "form_pairs", "json_body"]

FORM = "application/x-www-form-urlencoded"


async def form_pairs(request: web.Request) -> list[tuple[str, str]]:
    """The form fields in the order sent, repeated names kept; [] for a non-form body."""
    if request.content_type != FORM:
        return []
    body = await request.read()
    return parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True)


async def json_body(request: web.Request) -> Any:
    """The JSON body, or ``None`` when the body is not JSON."""
    if "json" not in request.content_type:
        return None
    try:
        return json.loads(await request.read())
    except (UnicodeDecodeError, ValueError):
        return None
