"""The auditor's HTTP API. Nothing here is open: every route wants a bearer token.

Read, behind ``Authorization: Bearer <MLC_AUDITOR_READ_TOKEN or MLC_AUDITOR_ADMIN_TOKEN>``:

- ``GET /trail?number=<invoice number>`` or ``?document_id=<uuid>`` (``&connection=<id>``); a
  notification's id in ``document_id`` shows that notification's document. Recipients masked,
  no message texts.

Admin, behind ``Authorization: Bearer <MLC_AUDITOR_ADMIN_TOKEN>`` (the read token is refused):

- ``GET /admin/trail?...`` as above; ``&reveal=1`` adds each message's text (opened with the
  data key) and its Exact contact. Recipients stay masked: the trail keeps no clear address.
- ``GET /admin/failed?since=<ISO time>&reason=<reason>``: notifications that need an
  operator, grouped by reason (no_contact, invalid_number, opted_out, provider_error,
  exhausted)
- ``POST /admin/retry`` with JSON ``{"notification_id": ...}``, ``{"document": <number or
  id>}`` or ``{"reason": ..., "since": ...}`` (and optional ``requested_by``): releases each
  failed notification's claim (ReleaseNotification; the dispatcher answers with
  notification.released, on which the document is read again from Exact) and re-reads the
  document of each one that was never claimed (skipped for want of a contact). Answers what it
  did per notification.
- ``GET /admin/suppressions?connection=&limit=``: the suppression history (masked).
- ``POST /admin/purge`` with JSON ``{"older_than_days": N, "confirm": true, "requested_by":
  ...}``: deletes notifications (attempts, statuses, inbound messages) last updated more than N
  days ago and records it in ``audit.privacy_log``; without ``confirm`` it only counts.

No ``Authorization`` header (or not a bearer one) answers 401; a token that is not the
configured one answers 403, as does every route while no token is configured. Why a separate
read token: a dashboard that shows masked trails should not hold the token that opens message
texts and starts retries; unset, only the admin token reads the trail.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import SecretStr

from auditor.adapters.trail import PostgresTrail
from auditor.handlers import reread_event
from common.amqp import Publisher
from common.contracts import FAILURE_REASONS, ReleaseNotification, SourceDocument
from common.logging import mask_text

__all__ = [
    "ADMIN_TOKEN",
    "CLIENT_ID",
    "PUBLISHER",
    "READ_TOKEN",
    "TRAIL",
    "add_routes",
    "trail_view",
]

TRAIL = web.AppKey("trail", PostgresTrail)
PUBLISHER = web.AppKey("publisher", Publisher)
ADMIN_TOKEN: web.AppKey[SecretStr | None] = web.AppKey("admin_token")
#: Optional: an app without it has no read-only token (the admin token still reads).
READ_TOKEN: web.AppKey[SecretStr | None] = web.AppKey("read_token")
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
    """Recipients masked once more whatever the store answered (they are kept masked; a row
    written by an older version must not show more); the text and contact only on reveal."""
    for item in items:
        if item.get("recipient"):
            item["recipient"] = mask_text(str(item["recipient"]))
        if not reveal:
            item.pop("content", None)  # the text names the customer and the amount
            item.pop("contact_id", None)
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
        number=number, document_id=document_id, connection_id=connection, reveal=reveal
    )
    if not trail and document_id is not None:
        # an id that is not a document's may be a notification's: show its document
        notification = await store.notification(document_id)
        if notification and notification.get("document_id"):
            trail = await store.document_trail(
                document_id=UUID(str(notification["document_id"])),
                connection_id=connection,
                reveal=reveal,
            )
    return _answer({"notifications": _masked(trail, reveal)})


async def trail_view(request: web.Request) -> web.Response:
    return await _trail(request, reveal=False)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bearer(request: web.Request) -> str | None:
    """The bearer token the request presents, None without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _refusal(request: web.Request, accepted: list[SecretStr]) -> web.Response | None:
    """None when the request presents one of the ``accepted`` tokens; else the answer: 403
    while none is configured, 401 without a bearer token, 403 with a wrong one."""
    if not accepted:
        return _answer({"error": "closed: set MLC_AUDITOR_ADMIN_TOKEN"}, 403)
    given = _bearer(request)
    if given is None:
        return web.json_response(
            {"error": "bearer token required"},
            status=401,
            headers={"WWW-Authenticate": 'Bearer realm="mlc-auditor"'},
        )
    # compare with every token, without stopping at the first match (constant time)
    matches = [hmac.compare_digest(given.encode(), t.get_secret_value().encode()) for t in accepted]
    if not any(matches):
        return _answer({"error": "wrong bearer token"}, 403)
    return None


def _guarded(view: Handler, *keys: web.AppKey[Any]) -> Handler:
    """``view`` behind the tokens stored under ``keys`` (a missing or unset key accepts
    nothing)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        accepted = [t for t in (request.app.get(k) for k in keys) if t is not None]
        refusal = _refusal(request, accepted)
        return refusal if refusal is not None else await view(request)

    return guarded


def _admin(view: Handler) -> Handler:
    return _guarded(view, ADMIN_TOKEN)


def _reader(view: Handler) -> Handler:
    return _guarded(view, READ_TOKEN, ADMIN_TOKEN)


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


def _older_than(body: dict[str, Any]) -> timedelta:
    """``older_than_days`` as a period; ValueError unless a whole number of 1 or more."""
    days = body.get("older_than_days")
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ValueError("older_than_days must be a whole number of days, 1 or more")
    return timedelta(days=days)


async def admin_purge(request: web.Request) -> web.StreamResponse:
    """Apply a retention period now (``mlc audit purge``); only counts unless confirmed."""
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        older_than = _older_than(body)
    except ValueError as exc:
        return _answer({"error": str(exc)}, 400)
    done = await request.app[TRAIL].purge(
        older_than=older_than,
        requested_by=str(body.get("requested_by") or "operator"),
        dry_run=body.get("confirm") is not True,
    )
    return _answer(done)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/trail", _reader(trail_view))
    app.router.add_get("/admin/trail", _admin(admin_trail))
    app.router.add_get("/admin/failed", _admin(admin_failed))
    app.router.add_post("/admin/retry", _admin(admin_retry))
    app.router.add_get("/admin/suppressions", _admin(admin_suppressions))
    app.router.add_post("/admin/purge", _admin(admin_purge))
