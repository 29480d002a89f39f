"""The auditor's query API: the trail of one document, as JSON.

``GET /trail?number=<invoice number>`` or ``GET /trail?document_id=<uuid>`` (optionally
``&connection=<id>``).
"""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

from aiohttp import web

from auditor.adapters.trail import PostgresTrail

__all__ = ["TRAIL", "trail_view"]

TRAIL = web.AppKey("trail", PostgresTrail)


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


async def trail_view(request: web.Request) -> web.Response:
    number = request.query.get("number")
    raw_id = request.query.get("document_id")
    if not number and not raw_id:
        return web.json_response({"error": "give number or document_id"}, status=400)
    try:
        document_id = UUID(raw_id) if raw_id else None
    except ValueError:
        return web.json_response({"error": "document_id is not a UUID"}, status=400)
    trail = await request.app[TRAIL].document_trail(
        number=number, document_id=document_id, connection_id=request.query.get("connection")
    )
    return web.json_response(
        {"notifications": trail}, dumps=lambda o: json.dumps(o, default=_json_default)
    )
