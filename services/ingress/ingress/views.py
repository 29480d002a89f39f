"""The webhook endpoints. Each verifies the signature on the raw bytes before trusting anything,
publishes one event with publisher confirms, and answers 2xx only after the broker confirmed.

Answers: 200 accepted (or an Exact validation ping, or a replay acknowledged but not published
again), 400 malformed, 401 forged or unsigned, 404 a connection id that cannot exist, 413 too
large (aiohttp), 422 signed but not the expected shape, 503 not durably queued (the sender
retries). Malformed input of any kind is a 4xx, never a 5xx: bodies are bounded in size and
JSON depth before parsing, forms are parsed defensively, ids checked against a pattern before
any lookup (``ingress.guards``).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import structlog
from aiohttp import web
from pydantic import ValidationError

from common.contracts import (
    ChannelCredentials,
    EmailEvent,
    ExactWebhookReceived,
    InboundSms,
    Message,
    TwilioStatus,
)
from common.contracts.email import NOTIFICATION_ARG
from common.contracts.twilio import answered_status
from common.errors import PermanentError, TransientError
from common.signatures import sendgrid_verify, split_exact_body, twilio_verify, verify_exact
from ingress.guards import event_age_seconds, json_depth_ok, valid_connection_id
from ingress.keys import CHANNELS, METRICS, PUBLISHER, REPLAYS, SECRETS, SETTINGS
from ingress.keywords import classify
from ingress.payloads import ExactEnvelope

__all__ = [
    "exact_webhook",
    "sendgrid_events",
    "twilio_inbound",
    "twilio_status",
    "twilio_voice_status",
]

log = structlog.get_logger("ingress")

#: A Twilio SID (SM..., MM..., CA...: two letters and 32 hex digits) and a status or event
#: name (lower-case words and hyphens): anything else would only make odd routing keys.
_SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")
_STATUS = re.compile(r"[a-z][a-z_-]{0,31}", re.IGNORECASE)


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
    if not valid_connection_id(connection_id):
        return _answer(request, "exact", "bad_connection_id", 404)
    body = await request.read()
    if not body.strip():
        # Exact's validation POST on subscription create: acknowledge, publish nothing.
        return _answer(request, "exact", "validation", 200, connection_id=connection_id)
    if not json_depth_ok(body):
        return _answer(request, "exact", "malformed", 400)
    split = split_exact_body(body)
    if split is None:
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
    settings, replays = request.app[SETTINGS], request.app[REPLAYS]
    seen_key = f"exact:{connection_id}:{split[1]}"
    if replays.seen(seen_key):
        return _answer(request, "exact", "replay", 200, connection_id=connection_id)
    age = event_age_seconds(content.EventCreatedOn)
    if age is not None and age > settings.ingress_max_event_age_seconds:
        return _answer(request, "exact", "too_old", 200, connection_id=connection_id)
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
    answer = await _publish(request, "exact", event)
    if answer.status == 200:
        replays.record(seen_key)
    return answer


async def _own_channels(request: web.Request) -> ChannelCredentials | None:
    """The accounts of the connection the callback URL names (``?connection=``), if it names
    one. Raises PermanentError for an impossible or unknown connection id."""
    connection_id = request.query.get("connection")
    if not connection_id:
        return None
    if not valid_connection_id(connection_id):
        raise PermanentError("not a connection id")
    return await request.app[CHANNELS].get(connection_id)


async def _twilio_auth_token(request: web.Request) -> str:
    """The auth token that signs this callback: the connection's own Twilio account when the
    callback URL names a connection that brings one, else the install's account."""
    own = await _own_channels(request)
    if own is not None and own.twilio_auth_token:
        return own.twilio_auth_token.get_secret_value()
    return request.app[SETTINGS].twilio_auth_token.get_secret_value()


async def _signed_twilio_form(request: web.Request) -> dict[str, str] | web.Response:
    """The form of a Twilio webhook whose ``X-Twilio-Signature`` holds, or the refusal."""
    settings = request.app[SETTINGS]
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise
    except Exception:  # not UTF-8, broken multipart, bad headers: the sender's, never a 500
        return _answer(request, "twilio", "malformed", 400)
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
    return dict(params)


async def twilio_status(request: web.Request) -> web.Response:
    """A Messages status callback (MessageSid, MessageStatus)."""
    values = await _signed_twilio_form(request)
    if isinstance(values, web.Response):
        return values
    sid = values.get("MessageSid") or values.get("SmsSid")
    status = values.get("MessageStatus") or values.get("SmsStatus")
    if not _SID.fullmatch(sid or "") or not _STATUS.fullmatch(status or ""):
        return _answer(request, "twilio", "invalid_shape", 422)
    event = TwilioStatus(
        provider_id=sid,
        status=status.lower(),
        error_code=values.get("ErrorCode"),
        raw=values,
        received_at=datetime.now(UTC),
    )
    return await _publish(request, "twilio", event)


async def twilio_voice_status(request: web.Request) -> web.Response:
    """A Calls status callback (CallSid, CallStatus), or the asynchronous answering machine
    detection result posted to the same URL (CallSid, AnsweredBy, no CallStatus): published
    as status ``answered`` (a person), ``voicemail`` (a machine or fax) or ``unknown``."""
    values = await _signed_twilio_form(request)
    if isinstance(values, web.Response):
        return values
    sid, status = values.get("CallSid"), values.get("CallStatus")
    if status is None and values.get("AnsweredBy"):
        status = answered_status(values["AnsweredBy"]) or "unknown"
    if not _SID.fullmatch(sid or "") or not _STATUS.fullmatch(status or ""):
        return _answer(request, "twilio", "invalid_shape", 422)
    event = TwilioStatus(
        resource="call",
        provider_id=sid,
        status=status.lower(),
        error_code=values.get("ErrorCode") or values.get("SipResponseCode"),
        raw=values,
        received_at=datetime.now(UTC),
    )
    return await _publish(request, "twilio", event)


#: What an incoming-message webhook answers: TwiML that says nothing (Twilio's own opt-out
#: handling, or Advanced Opt-Out, sends the STOP/START/HELP replies).
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def twilio_inbound(request: web.Request) -> web.Response:
    """An SMS a recipient sent us: STOP / START / HELP keywords feed the suppression list."""
    values = await _signed_twilio_form(request)
    if isinstance(values, web.Response):
        return values
    sid = values.get("MessageSid") or values.get("SmsSid")
    sender, to = values.get("From"), values.get("To")
    if not _SID.fullmatch(sid or "") or not sender or not to or max(len(sender), len(to)) > 64:
        return _answer(request, "twilio", "invalid_shape", 422)
    kind, keyword = classify(values.get("Body", ""), values.get("OptOutType"))
    event = InboundSms(
        connection_id=request.query.get("connection"),
        account_sid=values.get("AccountSid"),
        message_sid=sid,
        from_number=sender,
        to_number=to,
        messaging_service_sid=values.get("MessagingServiceSid"),
        kind=kind,
        keyword=keyword,
        received_at=datetime.now(UTC),
    )
    answer = await _publish(request, "twilio", event)
    if answer.status != 200:
        return answer
    return web.Response(text=_EMPTY_TWIML, content_type="text/xml")


_SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
_SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"


async def _sendgrid_key(request: web.Request) -> str:
    """The key that verifies this post: the connection's own SendGrid account's, if any."""
    own = await _own_channels(request)
    if own is not None and own.sendgrid_webhook_public_key:
        return own.sendgrid_webhook_public_key
    return request.app[SETTINGS].sendgrid_webhook_public_key


def _email_event(connection_id: str | None, item: dict[str, object]) -> EmailEvent | None:
    event, event_id = item.get("event"), item.get("sg_event_id")
    if not isinstance(event, str) or not _STATUS.fullmatch(event.lower()):
        return None
    if not isinstance(event_id, str) or not 0 < len(event_id) <= 128:
        return None
    when = item.get("timestamp")
    text = {k: v for k, v in item.items() if isinstance(v, str)}
    return EmailEvent(
        connection_id=connection_id,
        event=event.lower(),
        sg_event_id=event_id,
        sg_message_id=text.get("sg_message_id"),
        notification_id=text.get(NOTIFICATION_ARG),
        email=text.get("email"),
        type=text.get("type"),
        reason=text.get("reason") or text.get("response"),
        occurred_at=datetime.fromtimestamp(when, UTC) if isinstance(when, int) else None,
        received_at=datetime.now(UTC),
        raw=item,
    )


async def sendgrid_events(request: web.Request) -> web.Response:
    """SendGrid's Signed Event Webhook: a JSON array of events, ECDSA-signed over
    ``timestamp + body``. Each event is published on its own; a repeat (same ``sg_event_id``)
    has the same message id. 200 only after every event of the post was confirmed, so a
    partial failure (503) makes SendGrid post the whole batch again."""
    body = await request.read()
    signature = request.headers.get(_SENDGRID_SIGNATURE, "")
    timestamp = request.headers.get(_SENDGRID_TIMESTAMP, "")
    if not signature or not timestamp:
        return _answer(request, "sendgrid", "unsigned", 401)
    try:
        key = await _sendgrid_key(request)
    except PermanentError:
        return _answer(request, "sendgrid", "unknown_connection", 401)
    except TransientError as exc:
        return _answer(request, "sendgrid", "secret_unavailable", 503, error=str(exc))
    if not sendgrid_verify(key, body, signature, timestamp):
        return _answer(request, "sendgrid", "forged", 401)
    if not json_depth_ok(body):
        return _answer(request, "sendgrid", "malformed", 400)
    try:
        items = json.loads(body)
    except ValueError:
        return _answer(request, "sendgrid", "malformed", 400)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return _answer(request, "sendgrid", "invalid_shape", 422)
    connection_id = request.query.get("connection")
    events = [e for e in (_email_event(connection_id, item) for item in items) if e is not None]
    if len(events) != len(items):
        return _answer(request, "sendgrid", "invalid_shape", 422)
    publisher = request.app[PUBLISHER]
    try:
        for event in events:
            await publisher.publish(event, correlation_id=event.message_id())
    except Exception as exc:  # any failure to get a confirm means "not queued": SendGrid retries
        return _answer(request, "sendgrid", "not_queued", 503, error=type(exc).__name__)
    return _answer(request, "sendgrid", "accepted", 200, events=len(events))
