"""The auditor's HTTP API.

Open (read-only, recipients masked):

- ``GET /trail?number=<invoice number>`` or ``?document_id=<uuid>`` (``&connection=<id>``); a
  notification's id in ``document_id`` shows that notification's document

Admin, behind ``Authorization: Bearer <MLC_AUDITOR_ADMIN_TOKEN>``:

- ``GET /admin/trail?...`` as above; ``&reveal=1`` shows recipients unmasked
- ``GET /admin/failed?since=<ISO time>&reason=<reason>``: notifications that need an
  operator, grouped by reason (no_contact, invalid_number, opted_out, provider_error,
  exhausted)
- ``POST /admin/retry`` with JSON ``{"notification_id": ...}``, ``{"document": <number or
  id>}`` or ``{"reason": ..., "since": ...}`` (and optional ``requested_by``): releases each
  failed notification's claim (ReleaseNotification; the dispatcher answers with
  notification.released, on which the document is read again from Exact) and re-reads the
  document of each one that was never claimed (skipped for want of a contact). Answers what it
  did per notification.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import SecretStr

from auditor.adapters.trail import PostgresTrail
from auditor.handlers import reread_event
from common.amqp import Publisher
from common.contracts import FAILURE_REASONS, ReleaseNotification, SourceDocument
from common.logging import mask_text

__all__ = ["ADMIN_TOKEN", "CLIENT_ID", "PUBLISHER", "TRAIL", "add_routes", "trail_view"]

TRAIL = web.AppKey("trail", PostgresTrail)
PUBLISHER = web.AppKey("publisher", Publisher)
ADMIN_TOKEN = web.AppKey("admin_token", SecretStr | None)  # type: ignore[arg-type]
CLIENT_ID = web.AppKey("client_id", str)

#: Most notifications one retry request may touch (a wider one is refused, not truncated).
RETRY_LIMIT = 500

#: How many suppression changes ``/admin/suppressions`` answers by default, and at most.
SUPPRESSIONS_DEFAULT = 50
SUPPRESSIONS_MAX = 1000


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _answer(body: Any, status: int = 200) -> web.Response:
    return web.json_response(
        body, status=status, dumps=lambda o: json.dumps(o, default=_json_default)
    )


def _masked(items: list[dict[str, Any]], reveal: bool) -> list[dict[str, Any]]:
    if reveal:
        return items
    for item in items:
        if item.get("recipient"):
            item["recipient"] = mask_text(str(item["recipient"]))
        item.pop("content", None)  # the text names the customer and the amount
    return items


async def _trail(request: web.Request, *, reveal: bool) -> web.Response:
    number = request.query.get("number")
    raw_id = request.query.get("document_id")
    if not number and not raw_id:
        return _answer({"error": "give number or document_id"}, 400)
    try:
        document_id = UUID(raw_id) if raw_id else None
    except ValueError:
        return _answer({"error": "document_id is not a UUID"}, 400)
    store = request.app[TRAIL]
    connection = request.query.get("connection")
    trail = await store.document_trail(
        number=number, document_id=document_id, connection_id=connection
    )
    if not trail and document_id is not None:
        # an id that is not a document's may be a notification's: show its document
        notification = await store.notification(document_id)
        if notification and notification.get("document_id"):
            trail = await store.document_trail(
                document_id=UUID(str(notification["document_id"])), connection_id=connection
            )
    return _answer({"notifications": _masked(trail, reveal)})


async def trail_view(request: web.Request) -> web.Response:
    return await _trail(request, reveal=False)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _admin(view: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        expected = request.app[ADMIN_TOKEN]
        if expected is None:
            return _answer({"error": "admin API disabled: set MLC_AUDITOR_ADMIN_TOKEN"}, 403)
        given = request.headers.get("Authorization", "")
        wanted = f"Bearer {expected.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), wanted.encode()):
            return _answer({"error": "missing or wrong bearer token"}, 401)
        return await view(request)

    return guarded


async def admin_trail(request: web.Request) -> web.StreamResponse:
    return await _trail(request, reveal=request.query.get("reveal") in ("1", "true"))


def _since(raw: str | None) -> datetime | None:
    if not raw:
        return None
    moment = datetime.fromisoformat(raw)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def admin_failed(request: web.Request) -> web.StreamResponse:
    reason = request.query.get("reason")
    if reason and reason not in FAILURE_REASONS:
        return _answer({"error": f"reason must be one of {list(FAILURE_REASONS)}"}, 400)
    try:
        since = _since(request.query.get("since"))
    except ValueError:
        return _answer({"error": "since is not an ISO date or time"}, 400)
    rows = await request.app[TRAIL].failures(since=since, reason=reason)
    reveal = request.query.get("reveal") in ("1", "true")
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in _masked(rows, reveal):
        groups.setdefault(row.get("failure_reason") or "provider_error", []).append(row)
    return _answer({"groups": groups, "total": len(rows)})


async def _targets(trail: PostgresTrail, body: dict[str, Any]) -> list[dict[str, Any]]:
    if body.get("notification_id"):
        found = await trail.notification(UUID(str(body["notification_id"])))
        return [found] if found else []
    if body.get("document"):
        document = str(body["document"])
        try:
            items = await trail.document_trail(document_id=UUID(document))
        except ValueError:
            items = await trail.document_trail(number=document)
        return [n for n in items if n.get("state") in ("failed", "skipped")]
    if body.get("reason") or body.get("since"):
        return await trail.failures(since=_since(body.get("since")), reason=body.get("reason"))
    raise ValueError("give notification_id, document, or reason and/or since")


async def admin_retry(request: web.Request) -> web.StreamResponse:
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        targets = await _targets(request.app[TRAIL], body)
    except ValueError as exc:
        return _answer({"error": str(exc)}, 400)
    if len(targets) > RETRY_LIMIT:
        return _answer({"error": f"{len(targets)} notifications: narrow it down"}, 400)
    publisher, trail = request.app[PUBLISHER], request.app[TRAIL]
    requested_by = str(body.get("requested_by") or "operator")
    now = datetime.now(UTC)
    done = []
    for target in targets:
        nid = UUID(str(target["notification_id"]))
        if target.get("state") == "failed" and target.get("idempotency_key"):
            # The dispatcher releases the claim and reports notification.released; the
            # auditor then has the document read again (handlers.record_released).
            await publisher.publish(
                ReleaseNotification(
                    notification_id=nid, requested_by=requested_by, requested_at=now
                )
            )
            done.append({"notification_id": str(nid), "action": "release_requested"})
        elif target.get("state") in ("failed", "skipped") and target.get("document_id"):
            # Nothing was claimed (skipped, or failed before a send command existed): the
            # document is simply read again.
            source = SourceDocument(
                connection_id=target["connection_id"],
                division=target["division"],
                entity=target["entity"],
                id=UUID(str(target["document_id"])),
                number=target.get("document_number"),
            )
            await trail.retry_requested(nid, requested_by)
            await publisher.publish(
                reread_event(source, client_id=request.app[CLIENT_ID], reason="operator-retry")
            )
            done.append({"notification_id": str(nid), "action": "document_reread"})
        else:
            done.append({"notification_id": str(nid), "action": "nothing_to_retry"})
    return _answer({"retried": done})


def _limit(raw: str | None) -> int:
    """The ``limit`` asked for; ValueError unless 1 to SUPPRESSIONS_MAX."""
    limit = SUPPRESSIONS_DEFAULT if raw is None else int(raw)
    if not 1 <= limit <= SUPPRESSIONS_MAX:
        raise ValueError(limit)
    return limit


async def admin_suppressions(request: web.Request) -> web.StreamResponse:
    """Why an address gets nothing, and since when (masked: TrailQueries.suppressions)."""
    try:
        limit = _limit(request.query.get("limit"))
    except ValueError:
        return _answer({"error": f"limit must be 1 to {SUPPRESSIONS_MAX}"}, 400)
    rows = await request.app[TRAIL].suppressions(
        connection_id=request.query.get("connection") or None, limit=limit
    )
    return _answer({"suppressions": rows})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/trail", trail_view)
    app.router.add_get("/admin/trail", _admin(admin_trail))
    app.router.add_get("/admin/failed", _admin(admin_failed))
    app.router.add_post("/admin/retry", _admin(admin_retry))
    app.router.add_get("/admin/suppressions", _admin(admin_suppressions))
