"""The webhook endpoints. Each verifies the signature on the raw bytes before trusting anything,
publishes one event with publisher confirms, and answers 2xx only after the broker confirmed.

Answers: 200 accepted (or an Exact validation ping, or a replay acknowledged but not published
again), 400 malformed, 401 forged or unsigned, 403 signed by one tenant's account for another
(see below), 404 a connection id that cannot exist, 413 too large (aiohttp), 422 signed but not
the expected shape, 429 over the source's rate limit (``ingress.ratelimit``, before anything
else), 503 not durably queued (the sender retries). Malformed input of any kind is a 4xx, never
a 5xx: bodies are bounded in size and JSON depth before parsing, forms are parsed defensively,
ids checked against a pattern before any lookup (``ingress.guards``). Every 401, 403, 404 of a
connection id and 429 is a security event (``ingress.security``).

Tenant isolation. A company may bring its own Twilio account (and SendGrid key); its callbacks
name the connection (``?connection=X``) and are signed with that account's token. Holding one
account's token must not let a company speak for another, so a Twilio callback must carry the
``AccountSid`` of the account whose token signed it (X's own, or the install's without
``?connection=``), and a ``?connection=X`` whose connection brings no own account (or SendGrid
key) is refused: the vendor never calls back that way. The event then names the connection it
came from (``TwilioStatus.connection_id``, ``InboundSms.connection_id``,
``EmailEvent.connection_id``). Whether a message SID belongs to that connection is checked by
the auditor, which alone knows which notification (of which connection) a SID belongs to:
ingress cannot stop company B reporting a status for company A's SID from B's own account,
the auditor must refuse to apply it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
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
from ingress.guards import event_age_seconds, json_depth_ok, same_client_id, valid_connection_id
from ingress.keys import CHANNELS, METRICS, PUBLISHER, REPLAYS, SECRETS, SETTINGS, STATUSES
from ingress.keywords import classify
from ingress.payloads import ExactEnvelope
from ingress.ratelimit import WEBHOOK_PREFIX
from ingress.security import SecurityEventKind, record

__all__ = [
    "exact_webhook",
    "rate_limited",
    "sendgrid_events",
    "signed_url",
    "twilio_inbound",
    "twilio_status",
    "twilio_voice_status",
]

log = structlog.get_logger("ingress")


def signed_url(public_base_url: str, request: web.Request) -> str:
    """The URL Twilio called, as it signed it: the path and query exactly as sent (``raw_path``;
    ``path_qs`` would decode a ``%2F`` in ``?connection=`` and break the signature)."""
    return public_base_url.rstrip("/") + request.raw_path


#: A Twilio SID (SM..., MM..., CA...: two letters and 32 hex digits) and a status or event
#: name (lower-case words and hyphens): anything else would only make odd routing keys.
_SID = re.compile(r"[A-Z]{2}[0-9a-f]{32}")
_STATUS = re.compile(r"[a-z][a-z_-]{0,31}", re.IGNORECASE)


def _answer(
    request: web.Request, source: str, outcome: str, status: int, **context: object
) -> web.Response:
    request.app[METRICS].labels(source=source, outcome=outcome).inc()
    # An accepted webhook is counted, not logged at INFO: three or four of them per
    # notification would be most of ingress's log volume and a tenth of its CPU.
    level = log.debug if status < 400 else log.warning
    level(
        "webhook_" + ("accepted" if status < 300 else "rejected"),
        source=source,
        outcome=outcome,
        status=status,
        **context,
    )
    return web.json_response({"outcome": outcome}, status=status)


def _refuse(
    request: web.Request,
    source: str,
    kind: SecurityEventKind,
    status: int,
    *,
    outcome: str | None = None,
    **context: object,
) -> web.Response:
    """A refusal that is a security event: counted under both metrics, logged once (as a
    ``security_event``, not also as ``webhook_rejected``)."""
    outcome = outcome or kind
    request.app[METRICS].labels(source=source, outcome=outcome).inc()
    record(request, kind, {"source": source, "outcome": outcome, "status": status, **context})
    return web.json_response({"outcome": outcome}, status=status)


#: The ``source`` label of a path (a fixed set: a request cannot add label values).
_SOURCES = frozenset({"exact", "twilio", "sendgrid"})


def rate_limited(request: web.Request, report: bool) -> None:
    """Count a request the rate limit refused; log it only when ``report`` (once a minute per
    source), so that a flood does not become a flood of log lines."""
    source = request.path.removeprefix(WEBHOOK_PREFIX).partition("/")[0]
    source = source if source in _SOURCES else "other"
    request.app[METRICS].labels(source=source, outcome="rate_limited").inc()
    record(request, "rate_limited", {"source": source}, log_it=report)


async def _publish(
    request: web.Request, source: str, event: Message, send: Awaitable[None] | None = None
) -> web.Response:
    """Publish ``event`` (or await ``send``, a publish of it another way) and answer."""
    message_id = event.message_id()
    try:
        await (
            send
            or request.app[PUBLISHER].publish(
                event, correlation_id=message_id, message_id=message_id
            )
        )
    except Exception as exc:  # any failure to get a confirm means "not queued": tell the sender
        return _answer(request, source, "not_queued", 503, error=type(exc).__name__)
    return _answer(request, source, "accepted", 200, message_id=message_id, routing_key=event.key())


async def _read_body(request: web.Request) -> bytes | None:
    """The raw body, or None when it cannot be read as sent (a Content-Encoding that does not
    decode, a broken chunked encoding): the sender's fault, a 400, never a 500."""
    try:
        return await request.read()
    except RequestPayloadError:
        return None


async def exact_webhook(request: web.Request) -> web.Response:
    connection_id = request.match_info["connection_id"]
    if not valid_connection_id(connection_id):
        return _refuse(request, "exact", "unknown_connection", 404, outcome="bad_connection_id")
    body = await _read_body(request)
    if body is None:
        return _answer(request, "exact", "malformed", 400)
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
        if isinstance(parsed, dict) and "Content" in parsed:
            return _refuse(request, "exact", "unsigned", 401)
        return _answer(request, "exact", "malformed", 400)
    try:
        secret = await request.app[SECRETS].get(connection_id)
    except PermanentError:
        return _refuse(request, "exact", "unknown_connection", 401, connection_id=connection_id)
    except TransientError as exc:
        return _answer(request, "exact", "secret_unavailable", 503, error=str(exc))
    if not verify_exact(body, secret.secret.get_secret_value()):
        return _refuse(
            request, "exact", "forged_signature", 401, outcome="forged", connection_id=connection_id
        )
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
    if not same_client_id(content.ClientId, secret.client_id):
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


@dataclass(frozen=True)
class _TwilioAccount:
    """The Twilio account a callback must come from: its token signs the callback, and the
    callback's ``AccountSid`` must be its SID. ``connection_id`` None: the install's account."""

    connection_id: str | None
    account_sid: str
    auth_token: str


async def _twilio_account(request: web.Request) -> _TwilioAccount | None:
    """The connection's own Twilio account when the callback URL names a connection, else the
    install's. None when the named connection brings no own account: its messages go out from
    the install's account, whose callbacks never name a connection, so such a request is not
    Twilio's. Raises PermanentError (impossible or unknown id) or TransientError."""
    own = await _own_channels(request)
    if own is None:
        settings = request.app[SETTINGS]
        return _TwilioAccount(
            None, settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value()
        )
    if not (own.has_twilio and own.twilio_account_sid and own.twilio_auth_token):
        return None
    return _TwilioAccount(
        own.connection_id, own.twilio_account_sid, own.twilio_auth_token.get_secret_value()
    )


async def _read_form(request: web.Request) -> list[tuple[str, str]] | None:
    """The text fields of the posted form, or None when it cannot be parsed."""
    try:
        form = await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise
    except Exception:  # not UTF-8, broken multipart, bad headers: the sender's, never a 500
        return None
    return [(k, v) for k, v in form.items() if isinstance(v, str)]


def _clip(value: str | None) -> str | None:
    """A caller-chosen value as logged: bounded, so a refusal cannot write a megabyte line."""
    return None if value is None else value[:40]


async def _signed_twilio_form(
    request: web.Request,
) -> tuple[_TwilioAccount, dict[str, str]] | web.Response:
    """The account and form of a Twilio webhook whose ``X-Twilio-Signature`` holds and whose
    ``AccountSid`` is the signing account's, or the refusal. The AccountSid check keeps one
    tenant's token from speaking for another's account; which notification (connection) a
    message SID belongs to is the auditor's check (see the module docstring)."""
    params = await _read_form(request)
    if params is None:
        return _answer(request, "twilio", "malformed", 400)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return _refuse(request, "twilio", "unsigned", 401)
    try:
        account = await _twilio_account(request)
    except PermanentError:
        return _refuse(request, "twilio", "unknown_connection", 401)
    except TransientError as exc:
        return _answer(request, "twilio", "secret_unavailable", 503, error=str(exc))
    connection_id = request.query.get("connection")
    if account is None:
        return _refuse(
            request, "twilio", "connection_without_own_account", 403, connection_id=connection_id
        )
    url = signed_url(request.app[SETTINGS].public_base_url, request)
    # A header that is not ASCII cannot be a base64 signature (and would not encode).
    if not signature.isascii() or not twilio_verify(account.auth_token, url, params, signature):
        return _refuse(
            request,
            "twilio",
            "forged_signature",
            401,
            outcome="forged",
            connection_id=connection_id,
        )
    values = dict(params)
    if values.get("AccountSid") != account.account_sid:
        return _refuse(
            request,
            "twilio",
            "cross_tenant_account",
            403,
            connection_id=account.connection_id,
            account_sid=_clip(values.get("AccountSid")),
        )
    return account, values


async def twilio_status(request: web.Request) -> web.Response:
    """A Messages status callback (MessageSid, MessageStatus), published with the connection
    whose account sent it. The auditor checks that the SID is one of that connection's
    messages before applying the status (ingress cannot know whose a SID is)."""
    signed = await _signed_twilio_form(request)
    if isinstance(signed, web.Response):
        return signed
    account, values = signed
    sid = values.get("MessageSid") or values.get("SmsSid")
    status = values.get("MessageStatus") or values.get("SmsStatus")
    if sid is None or status is None or not (_SID.fullmatch(sid) and _STATUS.fullmatch(status)):
        return _answer(request, "twilio", "invalid_shape", 422)
    event = TwilioStatus(
        provider_id=sid,
        status=status.lower(),
        error_code=values.get("ErrorCode"),
        raw=values,
        received_at=datetime.now(UTC),
        connection_id=account.connection_id,
    )
    # with the callbacks of its status that arrive together, as one message (ingress.batching)
    return await _publish(request, "twilio", event, request.app[STATUSES].publish(event))


async def twilio_voice_status(request: web.Request) -> web.Response:
    """A Calls status callback (CallSid, CallStatus), or the asynchronous answering machine
    detection result posted to the same URL (CallSid, AnsweredBy, no CallStatus): published
    as status ``answered`` (a person), ``voicemail`` (a machine or fax) or ``unknown``.
    Published with the connection whose account sent it; the auditor checks the call SID is
    one of that connection's."""
    signed = await _signed_twilio_form(request)
    if isinstance(signed, web.Response):
        return signed
    account, values = signed
    sid, status = values.get("CallSid"), values.get("CallStatus")
    if status is None and values.get("AnsweredBy"):
        status = answered_status(values["AnsweredBy"]) or "unknown"
    if sid is None or status is None or not (_SID.fullmatch(sid) and _STATUS.fullmatch(status)):
        return _answer(request, "twilio", "invalid_shape", 422)
    event = TwilioStatus(
        resource="call",
        provider_id=sid,
        status=status.lower(),
        error_code=values.get("ErrorCode") or values.get("SipResponseCode"),
        raw=values,
        received_at=datetime.now(UTC),
        connection_id=account.connection_id,
    )
    # with the callbacks of its status that arrive together, as one message (ingress.batching)
    return await _publish(request, "twilio", event, request.app[STATUSES].publish(event))


#: What an incoming-message webhook answers: TwiML that says nothing (Twilio's own opt-out
#: handling, or Advanced Opt-Out, sends the STOP/START/HELP replies).
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def twilio_inbound(request: web.Request) -> web.Response:
    """An SMS a recipient sent us: STOP / START / HELP keywords feed the suppression list.
    Published with the connection (and AccountSid) of the account it came to, both verified:
    one company cannot opt a number out of another's messages."""
    signed = await _signed_twilio_form(request)
    if isinstance(signed, web.Response):
        return signed
    account, values = signed
    sid = values.get("MessageSid") or values.get("SmsSid")
    sender, to = values.get("From"), values.get("To")
    if not _SID.fullmatch(sid or "") or not sender or not to or max(len(sender), len(to)) > 64:
        return _answer(request, "twilio", "invalid_shape", 422)
    kind, keyword = classify(values.get("Body", ""), values.get("OptOutType"))
    event = InboundSms(
        connection_id=account.connection_id,
        account_sid=account.account_sid,
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


async def _sendgrid_key(request: web.Request) -> tuple[str | None, str] | None:
    """The connection and the key that verifies this post: the named connection's own SendGrid
    key, or the install's without ``?connection=``. None when the named connection has no own
    key: its email goes out from the install's account, whose events never name a connection.
    Raises PermanentError (impossible or unknown id) or TransientError."""
    own = await _own_channels(request)
    if own is None:
        return None, request.app[SETTINGS].sendgrid_webhook_public_key
    if not own.sendgrid_webhook_public_key:
        return None
    return own.connection_id, own.sendgrid_webhook_public_key


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
    partial failure (503) makes SendGrid post the whole batch again. Events carry the
    connection whose own key verified them (None: the install's); the auditor checks that the
    message they name is that connection's."""
    body = await _read_body(request)
    if body is None:
        return _answer(request, "sendgrid", "malformed", 400)
    signature = request.headers.get(_SENDGRID_SIGNATURE, "")
    timestamp = request.headers.get(_SENDGRID_TIMESTAMP, "")
    if not signature or not timestamp:
        return _refuse(request, "sendgrid", "unsigned", 401)
    try:
        verifier = await _sendgrid_key(request)
    except PermanentError:
        return _refuse(request, "sendgrid", "unknown_connection", 401)
    except TransientError as exc:
        return _answer(request, "sendgrid", "secret_unavailable", 503, error=str(exc))
    if verifier is None:
        return _refuse(
            request,
            "sendgrid",
            "connection_without_own_account",
            403,
            connection_id=request.query.get("connection"),
        )
    connection_id, key = verifier
    if not sendgrid_verify(key, body, signature, timestamp):
        return _refuse(
            request,
            "sendgrid",
            "forged_signature",
            401,
            outcome="forged",
            connection_id=connection_id,
        )
    if not json_depth_ok(body):
        return _answer(request, "sendgrid", "malformed", 400)
    try:
        items = json.loads(body)
    except ValueError:
        return _answer(request, "sendgrid", "malformed", 400)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return _answer(request, "sendgrid", "invalid_shape", 422)
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
