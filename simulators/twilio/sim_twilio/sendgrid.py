"""SendGrid v3 ``POST /v3/mail/send``: Bearer auth, JSON body, 202 with ``X-Message-Id``.

Checked: the API key (401), a JSON object body (400), ``personalizations`` (a non-empty list,
at most 1000, each with a non-empty ``to`` of ``{"email": ...}``), and ``from.email``. Error
bodies are SendGrid's ``{"errors": [{"message", "field", "help"}]}``. Faults with
``"api": "mail"`` apply (``http_500``, ``http_429``, ``timeout``, ``reject`` by address).
Accepted mails are kept in ``state.emails`` for ``GET /_sim/emails``.
"""

from __future__ import annotations

import secrets
from typing import Any

from aiohttp import web

from sim_twilio.auth import check_bearer
from sim_twilio.email_events import events_for, post_events
from sim_twilio.errors import SendGridError
from sim_twilio.faults import HTTP_FAULTS
from sim_twilio.forms import json_body
from sim_twilio.keys import SESSION, SETTINGS, STATE
from sim_twilio.state import utcnow

__all__ = ["send_mail"]

_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message."


def _emails(items: Any) -> list[str]:
    if not isinstance(items, list):
        return []
    return [i["email"] for i in items if isinstance(i, dict) and isinstance(i.get("email"), str)]


def _check(body: Any) -> None:
    if not isinstance(body, dict):
        raise SendGridError(400, "Bad Request")
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        raise SendGridError(
            400,
            "The personalizations field is required and must have at least one personalization.",
            "personalizations",
            _HELP + "personalizations",
        )
    if len(personalizations) > 1000:
        raise SendGridError(400, "Too many personalizations.", "personalizations")
    for index, personalization in enumerate(personalizations):
        to = personalization.get("to") if isinstance(personalization, dict) else None
        if not _emails(to) or len(_emails(to)) != len(to or []):
            raise SendGridError(
                400,
                "The to array is required for all personalization objects, and must have at "
                "least one email object with a valid email address.",
                f"personalizations.{index}.to",
                _HELP + "personalizations.to",
            )
    sender = body.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str):
        raise SendGridError(
            400,
            "The from object must be provided for every email send. It is an object that "
            "requires the email parameter, but may also contain a name parameter.",
            "from.email",
            _HELP + "from",
        )


async def send_mail(request: web.Request) -> web.Response:
    """``POST /v3/mail/send``: 202, no body, ``X-Message-Id`` naming the accepted mail."""
    settings, state = request.app[SETTINGS], request.app[STATE]
    check_bearer(request, settings)
    body = await json_body(request)
    _check(body)
    recipients = [e for p in body["personalizations"] for e in _emails(p["to"])]
    first = recipients[0]
    fault = state.faults.take(HTTP_FAULTS, "mail", first)
    if fault is not None:
        if fault.kind == "http_429":
            raise SendGridError(429, "too many requests")
        raise SendGridError(500, "internal server error")
    rejection = state.faults.take(["reject"], "mail", first)
    if rejection is not None:
        status = rejection.status if isinstance(rejection.status, int) else 400
        raise SendGridError(status, f"rejected ({rejection.code})", "personalizations.0.to")
    message_id = secrets.token_urlsafe(16)[:22]
    state.emails.append(
        {
            "message_id": message_id,
            "from": body["from"],
            "to": recipients,
            "subject": body.get("subject"),
            "template_id": body.get("template_id"),
            "custom_args": body.get("custom_args"),
            "categories": body.get("categories"),
            "received_at": utcnow().isoformat(),
            "body": body,
        }
    )
    outcome = state.faults.take(["final_status"], "mail", first)
    final = str(outcome.status) if outcome is not None else "delivered"
    events = [
        event
        for email in recipients
        for event in events_for(message_id, email, final, body.get("custom_args"))
    ]
    state.spawn(post_events(request.app[SESSION], settings, events))
    timeout = state.faults.take(["timeout"], "mail", first)
    if timeout is not None:
        await state.hold(timeout.seconds)
    return web.Response(status=202, headers={"X-Message-Id": message_id})
