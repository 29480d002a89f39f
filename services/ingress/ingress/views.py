"""The webhook endpoints. Each verifies the signature on the raw bytes before trusting anything,
publishes one event with publisher confirms, and answers 2xx only after the broker confirmed.

Answers: 200 accepted (or an Exact validation ping), 400 malformed, 401 forged or unsigned,
413 too large (aiohttp), 422 signed but not the expected shape, 503 not durably queued (the
sender retries).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import structlog
from aiohttp import web
from pydantic import ValidationError

from common.contracts import ExactWebhookReceived, Message, TwilioStatus
from common.errors import PermanentError, TransientError
from common.signatures import split_exact_body, twilio_verify, verify_exact
from ingress.keys import CHANNELS, METRICS, PUBLISHER, SECRETS, SETTINGS
from ingress.payloads import ExactEnvelope

__all__ = ["exact_webhook", "twilio_status"]

log = structlog.get_logger("ingress")


def _answer(
    request: web.Request, source: str, outcome: str, status: int, **context: object
) -> web.Response:
    request.app[METRICS].labels(source=source, outcome=outcome).inc()
    level = log.info if status < 400 else log.warning
    level(
        "webhook_" + ("accepted" if status < 300 else "rejected"),
        source=source,
        outcome=outcome,
        status=status,
        **context,
    )
    return web.json_response({"outcome": outcome}, status=status)


async def _publish(request: web.Request, source: str, event: Message) -> web.Response:
    try:
        await request.app[PUBLISHER].publish(event, correlation_id=event.message_id())
    except Exception as exc:  # any failure to get a confirm means "not queued": tell the sender
        return _answer(request, source, "not_queued", 503, error=type(exc).__name__)
    return _answer(
        request, source, "accepted", 200, message_id=event.message_id(), routing_key=event.key()
    )


async def exact_webhook(request: web.Request) -> web.Response:
    connection_id = request.match_info["connection_id"]
    body = await request.read()
    if not body.strip():
        # Exact's validation POST on subscription create: acknowledge, publish nothing.
        return _answer(request, "exact", "validation", 200, connection_id=connection_id)
    if split_exact_body(body) is None:
        try:
            parsed = json.loads(body)
        except ValueError:
            return _answer(request, "exact", "malformed", 400)
        unsigned = isinstance(parsed, dict) and "Content" in parsed
        return _answer(
            request, "exact", "unsigned" if unsigned else "malformed", 401 if unsigned else 400
        )
    try:
        secret = await request.app[SECRETS].get(connection_id)
    except PermanentError:
        return _answer(request, "exact", "unknown_connection", 401, connection_id=connection_id)
    except TransientError as exc:
        return _answer(request, "exact", "secret_unavailable", 503, error=str(exc))
    if not verify_exact(body, secret.secret.get_secret_value()):
        return _answer(request, "exact", "forged", 401, connection_id=connection_id)
    try:
        envelope = ExactEnvelope.model_validate_json(body)
    except ValidationError as exc:
        malformed = any(e["type"] == "json_invalid" for e in exc.errors())
        return _answer(
            request,
            "exact",
            "malformed" if malformed else "invalid_shape",
            400 if malformed else 422,
        )
    content = envelope.Content
    if content.ClientId.lower() != secret.client_id.lower():
        return _answer(request, "exact", "wrong_client", 422, connection_id=connection_id)
    event = ExactWebhookReceived(
        connection_id=connection_id,
        client_id=content.ClientId,
        division=content.Division,
        topic=content.Topic,
        action=content.Action,
        key_id=content.Key,
        endpoint=content.ExactOnlineEndpoint,
        event_created_on=content.EventCreatedOn,
        received_at=datetime.now(UTC),
    )
    return await _publish(request, "exact", event)


async def _twilio_auth_token(request: web.Request) -> str:
    """The auth token that signs this callback: the connection's own Twilio account when the
    callback URL names a connection that brings one, else the install's account."""
    default = request.app[SETTINGS].twilio_auth_token.get_secret_value()
    connection_id = request.query.get("connection")
    if not connection_id:
        return default
    own = await request.app[CHANNELS].get(connection_id)
    return own.twilio_auth_token.get_secret_value() if own.twilio_auth_token else default


async def twilio_status(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    form = await request.post()
    params = [(k, v) for k, v in form.items() if isinstance(v, str)]
    url = settings.public_base_url.rstrip("/") + request.path_qs
    signature = request.headers.get("X-Twilio-Signature", "")
    try:
        auth_token = await _twilio_auth_token(request)
    except PermanentError:
        return _answer(request, "twilio", "unknown_connection", 401)
    except TransientError as exc:
        return _answer(request, "twilio", "secret_unavailable", 503, error=str(exc))
    if not twilio_verify(auth_token, url, params, signature):
        return _answer(request, "twilio", "forged", 401)
    values = dict(params)
    sid = values.get("MessageSid") or values.get("SmsSid")
    status = values.get("MessageStatus") or values.get("SmsStatus")
    if not sid or not status:
        return _answer(request, "twilio", "invalid_shape", 422)
    event = TwilioStatus(
        provider_id=sid,
        status=status.lower(),
        error_code=values.get("ErrorCode"),
        raw=values,
        received_at=datetime.now(UTC),
    )
    return await _publish(request, "twilio", event)
