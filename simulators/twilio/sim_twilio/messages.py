"""Messages API: create (``POST``), fetch and list (``GET``) under ``/2010-04-01/Accounts/{sid}``.

A create is checked in this order, and the first problem found is the answer:

1. Basic auth (401 / 20003), then the path's AccountSid (404 / 20404).
2. Injected ``http_500`` / ``http_429`` faults: answered without processing the request.
3. The form against the fixture derived from the OpenAPI description (``validation.py``):
   missing ``To`` 21604 (a JSON body lands here too, since it carries no form fields), then
   pattern/type/enum/format violations, then the ``x-twilio.conditional`` groups: no
   ``From``/``MessagingServiceSid`` 21603, no ``Body``/``MediaUrl``/``ContentSid`` 21602.
4. Rules stated only in the parameter descriptions and error pages (see ``_rules``).
5. Magic test numbers (``magic.py``), then injected ``reject`` faults.

Then the message is created, its status progression starts in the background
(``lifecycle.py``) and the answer is 201 with the resource; an injected ``timeout`` holds that
answer back after the message exists, as a slow Twilio would.
"""

from __future__ import annotations

import copy
import re
from email.utils import parsedate_to_datetime
from typing import Any

from aiohttp import web

from sim_twilio.auth import check_account, check_basic
from sim_twilio.callbacks import CallbackPolicy
from sim_twilio.errors import TwilioError
from sim_twilio.faults import HTTP_FAULTS
from sim_twilio.forms import form_pairs
from sim_twilio.keys import CREATE_MESSAGE, LIST_MESSAGE, METRICS, SESSION, SETTINGS, STATE
from sim_twilio.lifecycle import DEFAULT_ERROR_CODES, MessagePlan, run_message
from sim_twilio.listing import DateBounds, date_bounds, page_body, page_params, within
from sim_twilio.magic import MAGIC_FROM, MAGIC_TO
from sim_twilio.resources import API_VERSION, message_resource, new_sid
from sim_twilio.settings import Settings
from sim_twilio.state import Record, SimState, utcnow
from sim_twilio.validation import Violation

__all__ = ["LIST_QUERY_PARAMETERS", "create_message", "fetch_message", "list_messages"]

#: The query parameters ``list_messages`` understands: those of ``ListMessage`` in the OpenAPI
#: description (``openapi/list_message.json``; a contract test keeps the two equal).
#: ``DateSent>``/``DateSent<`` are parameter names: ``?DateSent>=2026-11-30`` reads as
#: ``DateSent>`` = ``2026-11-30``, "sent on or after".
LIST_QUERY_PARAMETERS = (
    "To",
    "From",
    "DateSent",
    "DateSent<",
    "DateSent>",
    "PageSize",
    "Page",
    "PageToken",
)

_PLAN_FAULTS = ("final_status", "duplicate_callbacks", "reorder_callbacks")

#: Parameter -> Twilio code for a value that breaks its schema. To 21211, From 21212,
#: MessagingServiceSid 21705, StatusCallback 21609 and ValidityPeriod 90007 come from Twilio's
#: error pages (see errors.CATALOGUE); any other parameter gets the generic 400 code.
_PARAM_CODES = {
    "To": 21211,
    "From": 21212,
    "MessagingServiceSid": 21705,
    "StatusCallback": 21609,
    "ValidityPeriod": 90007,
}
_TO_ADDRESS = re.compile(r"^(\+[1-9]\d{1,14}|[a-z][a-z0-9-]*:\S+)$")


def _violation_error(violation: Violation) -> TwilioError:
    if violation.keyword == "required":
        return TwilioError(21604)
    if violation.keyword == "conditional":
        return TwilioError(21603 if "From" in violation.group else 21602)
    code = _PARAM_CODES.get(violation.param or "", 400)
    return TwilioError(code, value=violation.value, param=violation.param)


def _rules(params: dict[str, Any]) -> TwilioError | None:
    """Constraints Twilio documents outside the schema (descriptions and error pages)."""
    if not _TO_ADDRESS.match(params["To"]):  # a short code or sender ID cannot receive
        return TwilioError(21211, value=params["To"])
    if len(params.get("Body", "")) > 1600:
        return TwilioError(21617)
    validity = params.get("ValidityPeriod")
    if validity is not None and not 1 <= validity <= 36000:
        return TwilioError(90007, value=validity)
    if len(params.get("MediaUrl", [])) > 10:
        return TwilioError(400, message="Up to 10 MediaUrl parameters are allowed")
    needs_service = [p for p in ("ShortenUrls", "ScheduleType") if params.get(p)]
    if needs_service and "MessagingServiceSid" not in params:
        return TwilioError(400, message=f"{needs_service[0]} requires a MessagingServiceSid")
    if params.get("ScheduleType") and "SendAt" not in params:
        return TwilioError(400, message="ScheduleType requires SendAt")
    if "ContentVariables" in params and "ContentSid" not in params:
        return TwilioError(400, message="ContentVariables requires ContentSid")
    return None


def _plan(state: SimState, settings: Settings, record: Record, sender: str | None) -> MessagePlan:
    """The message's fate: settings, overridden by the faults that match it (recorded)."""
    to = record.resource["to"]
    final: str = settings.sim_twilio_final_status
    error_code = DEFAULT_ERROR_CODES.get(final)
    taken = {kind: state.faults.take([kind], "messages", to) for kind in _PLAN_FAULTS}
    record.faults += [fault.id for fault in taken.values() if fault is not None]
    if (fault := taken["final_status"]) is not None:
        final = str(fault.status)
        error_code = fault.error_code or DEFAULT_ERROR_CODES.get(final)
    return MessagePlan(
        final_status=final,
        error_code=error_code,
        sender=sender or settings.sim_twilio_pool_sender,
        delay=settings.sim_twilio_callback_delay,
        duplicate=taken["duplicate_callbacks"] is not None,
        reorder=taken["reorder_callbacks"] is not None,
    )


async def create_message(request: web.Request) -> web.Response:
    """``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``."""
    settings, state = request.app[SETTINGS], request.app[STATE]
    check_basic(request, settings)
    check_account(request, settings)
    pairs = await form_pairs(request)
    to = next((value for name, value in pairs if name == "To"), None)
    fault = state.faults.take(HTTP_FAULTS, "messages", to)
    if fault is not None:
        if fault.kind == "http_500":
            raise TwilioError(20500)
        raise TwilioError(20429, retry_after=fault.retry_after)

    operation = request.app[CREATE_MESSAGE]
    params, unknown = operation.instance(pairs)
    violations = operation.violations(params, order=[name for name, _ in pairs])
    if violations:
        raise _violation_error(violations[0])
    rule_error = _rules(params)
    if rule_error is not None:
        raise rule_error
    sender = params.get("From")
    if sender in MAGIC_FROM:
        raise TwilioError(MAGIC_FROM[sender], value=sender)
    if params["To"] in MAGIC_TO:
        raise TwilioError(MAGIC_TO[params["To"]], value=params["To"])
    if params["To"] in state.opted_out:  # the recipient texted STOP (see sim_twilio.inbound)
        raise TwilioError(21610, value=params["To"])
    rejection = state.faults.take(["reject"], "messages", params["To"])
    if rejection is not None:
        status = rejection.status if isinstance(rejection.status, int) else None
        raise TwilioError(rejection.code or 21211, status=status, value=params["To"])

    service = params.get("MessagingServiceSid")
    media = params.get("MediaUrl", [])
    resource = message_resource(
        sid=new_sid("MM" if media else "SM"),
        account_sid=settings.twilio_account_sid,
        to=params["To"],
        from_=sender,
        messaging_service_sid=service,
        body=params.get("Body", ""),
        num_media=len(media),
        status="accepted" if service else "queued",
        created=utcnow(),
    )
    callback = params.get("StatusCallback") or (
        settings.sim_twilio_service_status_callback if service else None
    )
    record = Record(resource, status_callback=callback, extra_params=unknown)
    state.messages[resource["sid"]] = record
    plan = _plan(state, settings, record, sender)
    answer = copy.deepcopy(resource)
    state.spawn(
        run_message(
            record,
            plan,
            session=request.app[SESSION],
            policy=CallbackPolicy.from_settings(settings),
            metrics=request.app[METRICS],
        )
    )
    timeout = state.faults.take(["timeout"], "messages", params["To"])
    if timeout is not None:
        record.faults.append(timeout.id)
        await state.hold(timeout.seconds)
    return web.json_response(answer, status=201)


async def fetch_message(request: web.Request) -> web.Response:
    """``GET /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}.json``."""
    settings, state = request.app[SETTINGS], request.app[STATE]
    check_basic(request, settings)
    check_account(request, settings)
    record = state.messages.get(request.match_info["MessageSid"])
    if record is None:
        raise TwilioError(20404, path=request.path)
    return web.json_response(record.resource)


def _matches(record: Record, query: Any, sent: DateBounds) -> bool:
    message = record.resource
    if "To" in query and message["to"] != query["To"]:
        return False
    if "From" in query and message["from"] != query["From"]:
        return False
    # A message not sent yet has no date_sent; the simulator filters it by its creation time
    # so that a reconciliation right after an ambiguous create still finds it.
    moment = (
        parsedate_to_datetime(message["date_sent"]) if message["date_sent"] else record.created_at
    )
    return within(moment, sent)


async def list_messages(request: web.Request) -> web.Response:
    """``GET /2010-04-01/Accounts/{AccountSid}/Messages.json``, newest first, paged."""
    settings, state = request.app[SETTINGS], request.app[STATE]
    check_basic(request, settings)
    check_account(request, settings)
    query = request.query
    sent = date_bounds(query, "DateSent")
    bounds = request.app[LIST_MESSAGE]["query_parameters"]["PageSize"]
    page_size, page = page_params(
        query,
        settings.sim_twilio_page_size,
        bounds.get("minimum", 1),
        bounds.get("maximum", 1000),
    )
    found = [r.resource for r in reversed(state.messages.values()) if _matches(r, query, sent)]
    base = f"/{API_VERSION}/Accounts/{settings.twilio_account_sid}/Messages.json"
    return web.json_response(page_body("messages", found, query, base, page, page_size))
