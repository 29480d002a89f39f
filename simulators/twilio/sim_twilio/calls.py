"""Calls API: create (``POST``), fetch and list (``GET``) under ``/2010-04-01/Accounts/{sid}``,
plus call progress and answering machine detection (AMD).

A create is checked in this order: auth (20003), account (20404), ``http_500``/``http_429``
faults, the form against the fixture derived from ``CreateCall`` (no To 21201, no From 21213,
bad ``Url`` 21205, other violations 21200; none of ``Url``/``Twiml``/``ApplicationSid`` 21200,
the ``x-twilio.conditional`` group), ``Twiml`` (below), ``StatusCallbackEvent`` values
(21626), ``reject`` faults.

The spec says that when ``Twiml`` and ``Url`` are both given ``Twiml`` is ignored, so more than
one of the three is accepted rather than refused, and ``Twiml`` is only checked without ``Url``:
at most 4000 characters (the spec's description), well-formed XML with the root
``<Response>`` (``twiml.py``). Refused with 21200. UNCONFIRMED: which code Twilio answers a bad
``Twiml`` with. 12100 "Document parse failure" is documented for TwiML Twilio cannot parse, but
as a debugger error raised while a call runs, not as a REST answer; 21200 is the documented
code for a bad Calls request. The received ``Twiml`` is kept on the record
(``GET /_sim/calls`` shows it as ``twiml``), not on the Call resource, which has no such field.

Progress. A call goes queued -> ringing -> in-progress -> completed, one step per
``callback_delay``; a ``final_status`` fault (``api: calls``) may end it busy, no-answer, failed
or canceled instead: queued -> ringing -> that status, never answered, ``duration`` 0,
``start_time`` when it rang. Status callbacks go only for the events named in
``StatusCallbackEvent`` (``completed`` alone by default), each with a ``SequenceNumber``
counting from 0 and a ``Timestamp``. The end of the call, however it ends, goes to the
``completed`` subscription with ``CallStatus`` = the final status, and adds ``CallDuration``
(seconds) and ``Duration`` (minutes).

AMD (twilio.com/docs/voice/answering-machine-detection). With ``MachineDetection`` =
``Enable`` or ``DetectMessageEnd``, an answered call gets ``answered_by`` on the resource when
it goes in-progress: ``human``, unless the ``final_status`` fault names another
``answered_by``. With ``AsyncAmd=true`` and an ``AsyncAmdStatusCallback`` URL, the verdict is
also posted there right after the in-progress step, signed like the status callbacks:
``AccountSid``, ``CallSid``, ``AnsweredBy``, ``MachineDetectionDuration`` (milliseconds).
Without ``MachineDetection``, ``answered_by`` stays ``null`` (the spec: "Empty otherwise") and
a fault's ``answered_by`` is used up without effect; an unanswered call gets no verdict.
Confirmed on Twilio's AMD page: the four request parameters, their values and defaults, and
that the verdict goes to ``AsyncAmdStatusCallback`` as ``AnsweredBy``. UNCONFIRMED (the
parameter table of that page could not be read; taken from Twilio-compatible vendors' copies
and client code): the callback's exact field list and the seven ``AnsweredBy`` values
(``faults.ANSWERED_BY``). The spec's ``answered_by`` description ("Either human or machine")
is older than those values. Not played: ``AsyncAmdStatusCallbackMethod=GET`` (the verdict is
always POSTed), which values go with which ``MachineDetection`` mode (``machine_start`` with
``Enable``, ``machine_end_*`` with ``DetectMessageEnd``; any value is accepted for either), the
tuning parameters, and a realistic ``MachineDetectionDuration`` (a fixed
:data:`DETECTION_MS`).

List. Newest first, paged as ``listing.py`` describes, filtered by ``To``, ``From``,
``ParentCallSid``, ``Status`` (a value outside ``call_enum_status`` answers 400) and
``StartTime``/``EndTime`` with their ``<``/``>`` forms (``?StartTime>=2026-11-30``). A call not
started yet is filtered by its creation time, so that a lookup right after an ambiguous create
still finds it (what ``list_messages`` does for unsent messages); a call not ended matches no
``EndTime`` filter.
"""

from __future__ import annotations

import asyncio
import copy
import math
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from aiohttp import web

from sim_twilio.auth import check_account, check_basic
from sim_twilio.callbacks import CallbackPolicy, deliver
from sim_twilio.errors import TwilioError
from sim_twilio.faults import HTTP_FAULTS
from sim_twilio.forms import form_pairs
from sim_twilio.keys import CREATE_CALL, METRICS, SESSION, SETTINGS, STATE
from sim_twilio.listing import DateBounds, date_bounds, page_body, page_params, within
from sim_twilio.metrics import Metrics
from sim_twilio.resources import API_VERSION, call_resource, new_sid, rfc2822
from sim_twilio.settings import Settings
from sim_twilio.state import Delivery, Record, SimState, utcnow
from sim_twilio.twiml import twiml_problem
from sim_twilio.validation import Violation

__all__ = [
    "DETECTION_MS",
    "LIST_QUERY_PARAMETERS",
    "CallPlan",
    "CallRecord",
    "create_call",
    "fetch_call",
    "list_calls",
    "run_call",
]

#: The query parameters ``list_calls`` understands: those of ``ListCall`` in the OpenAPI
#: description, in its order (a contract test compares the two when the spec is at hand).
LIST_QUERY_PARAMETERS = (
    "To",
    "From",
    "ParentCallSid",
    "Status",
    "StartTime",
    "StartTime<",
    "StartTime>",
    "EndTime",
    "EndTime<",
    "EndTime>",
    "PageSize",
    "Page",
    "PageToken",
)
#: ``PageSize`` bounds of ``ListCall`` (spec: minimum 1, maximum 1000).
_PAGE_SIZE = (1, 1000)
#: ``call_enum_status``: the values ``Status`` may filter on.
_STATUSES = frozenset(
    {"queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"}
)
#: ``MachineDetection`` values that turn AMD on (Twilio's AMD page).
_AMD_MODES = frozenset({"Enable", "DetectMessageEnd"})
#: ``MachineDetectionDuration`` of every verdict, in milliseconds (invented; Twilio's varies).
DETECTION_MS = 2400
#: The longest ``Twiml`` Twilio takes (the parameter's description in the spec).
_TWIML_MAX = 4000
#: Events a call can be subscribed to, in the order it goes through them.
_EVENTS = ("initiated", "ringing", "answered", "completed")


@dataclass
class CallRecord(Record):
    """A created call: the record every resource has, plus the ``Twiml`` it was given."""

    twiml: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The admin API's view: the record's, plus ``twiml``."""
        return {**super().as_json(), "twiml": self.twiml}


@dataclass(frozen=True)
class CallPlan:
    """What will happen to one call: how it ends, and the AMD verdict if one was asked for."""

    events: frozenset[str]
    delay: float
    duration: int
    duplicate: bool = False
    reorder: bool = False
    final_status: str = "completed"
    answered_by: str | None = None
    amd_callback: str | None = None


def _steps(final_status: str) -> list[tuple[str, str]]:
    """(event, resource status) in order; an unanswered call skips ``answered``."""
    answered = [("answered", "in-progress")] if final_status == "completed" else []
    return [("initiated", "queued"), ("ringing", "ringing"), *answered, ("completed", final_status)]


def _violation_error(violation: Violation) -> TwilioError:
    if violation.keyword == "required":
        return TwilioError(21201 if violation.param == "To" else 21213)
    if violation.keyword == "conditional":
        return TwilioError(21200, detail="a 'Url', 'Twiml' or 'ApplicationSid' is required")
    if violation.param == "Url":
        return TwilioError(21205, value=violation.value)
    return TwilioError(21200, detail=f"invalid parameter '{violation.param}'")


def _twiml_error(params: dict[str, Any]) -> TwilioError | None:
    """A ``Twiml`` that would run (no ``Url`` beside it) must be TwiML; see the module doc."""
    twiml = params.get("Twiml")
    if twiml is None or "Url" in params:
        return None
    if len(twiml) > _TWIML_MAX:
        return TwilioError(21200, detail=f"'Twiml' is longer than {_TWIML_MAX} characters")
    problem = twiml_problem(twiml)
    return None if problem is None else TwilioError(21200, detail=f"invalid 'Twiml': {problem}")


def _callback_status(event: str, status: str) -> str:
    """``CallStatus`` of a progress callback: the resource's status, except that the
    ``initiated`` event reports ``initiated`` while the resource says ``queued``."""
    return "initiated" if event == "initiated" else status


def _call_params(
    record: Record, event: str, callback_status: str, sequence: int
) -> list[tuple[str, str]]:
    call = record.resource
    params = [
        ("AccountSid", call["account_sid"]),
        ("ApiVersion", API_VERSION),
        ("CallSid", call["sid"]),
        ("CallStatus", callback_status),
        ("CallbackSource", "call-progress-events"),
        ("Direction", call["direction"]),
        ("From", call["from"]),
        ("To", call["to"]),
        ("SequenceNumber", str(sequence)),
        ("Timestamp", rfc2822(utcnow()) or ""),
    ]
    if event == "completed":
        seconds = int(call["duration"] or 0)
        params += [("CallDuration", str(seconds)), ("Duration", str(math.ceil(seconds / 60)))]
    return params


def _amd_params(record: Record) -> list[tuple[str, str]]:
    """The form posted to ``AsyncAmdStatusCallback``."""
    call = record.resource
    return [
        ("AccountSid", call["account_sid"]),
        ("CallSid", call["sid"]),
        ("AnsweredBy", call["answered_by"]),
        ("MachineDetectionDuration", str(DETECTION_MS)),
    ]


def _advance(record: Record, plan: CallPlan, event: str, status: str) -> None:
    """Move the resource itself to ``status`` (always in the true order)."""
    call = record.resource
    now = utcnow()
    call["status"], call["date_updated"] = status, rfc2822(now)
    if event == "ringing" and plan.final_status != "completed":
        call["start_time"] = rfc2822(now)  # dialled, never answered
    if event == "answered":
        call["start_time"] = rfc2822(now)
        call["answered_by"] = plan.answered_by
    if event == "completed":
        seconds = plan.duration if plan.final_status == "completed" else 0
        call["duration"] = str(seconds)
        call["end_time"] = rfc2822(now + timedelta(seconds=seconds))


async def run_call(
    record: Record,
    plan: CallPlan,
    *,
    session: aiohttp.ClientSession,
    policy: CallbackPolicy,
    metrics: Metrics,
) -> None:
    """Walk the call through its progress events, posting the requested callbacks."""
    sequence = 0
    pending: list[Delivery] = []
    for event, status in _steps(plan.final_status):
        if event != "initiated":
            await asyncio.sleep(plan.delay)
        _advance(record, plan, event, status)
        if record.status_callback and event in plan.events:
            callback_status = _callback_status(event, status)
            params = _call_params(record, event, callback_status, sequence)
            sequence += 1
            copies = [Delivery(callback_status, record.status_callback, params)]
            if plan.duplicate:
                copies.append(Delivery(callback_status, record.status_callback, params))
            if plan.reorder:
                pending[:0] = copies
            else:
                for delivery in copies:
                    record.callbacks.append(delivery)
                    await deliver(session, delivery, policy, metrics, "call")
        if event == "answered" and plan.amd_callback:
            verdict = Delivery("amd", plan.amd_callback, _amd_params(record))
            record.callbacks.append(verdict)
            await deliver(session, verdict, policy, metrics, "call")
    for delivery in pending:
        record.callbacks.append(delivery)
        await deliver(session, delivery, policy, metrics, "call")


def _plan(state: SimState, settings: Settings, record: Record, params: dict[str, Any]) -> CallPlan:
    """The call's fate: settings, overridden by the faults that match it (recorded)."""
    to = params["To"]
    taken = {
        kind: state.faults.take([kind], "calls", to)
        for kind in ("final_status", "duplicate_callbacks", "reorder_callbacks")
    }
    record.faults += [fault.id for fault in taken.values() if fault is not None]
    outcome = taken["final_status"]
    final_status = str(outcome.status) if outcome is not None else "completed"
    amd = params.get("MachineDetection") in _AMD_MODES and final_status == "completed"
    answered_by = ((outcome and outcome.answered_by) or "human") if amd else None
    asynchronous = str(params.get("AsyncAmd", "")).lower() == "true"
    return CallPlan(
        events=frozenset(params.get("StatusCallbackEvent", ["completed"])),
        delay=settings.sim_twilio_callback_delay,
        duration=settings.sim_twilio_call_duration,
        duplicate=taken["duplicate_callbacks"] is not None,
        reorder=taken["reorder_callbacks"] is not None,
        final_status=final_status,
        answered_by=answered_by,
        amd_callback=params.get("AsyncAmdStatusCallback") if amd and asynchronous else None,
    )


async def create_call(request: web.Request) -> web.Response:
    """``POST /2010-04-01/Accounts/{AccountSid}/Calls.json``."""
    settings, state = request.app[SETTINGS], request.app[STATE]
    check_basic(request, settings)
    check_account(request, settings)
    pairs = await form_pairs(request)
    to = next((value for name, value in pairs if name == "To"), None)
    fault = state.faults.take(HTTP_FAULTS, "calls", to)
    if fault is not None:
        raise TwilioError(20500 if fault.kind == "http_500" else 20429)

    operation = request.app[CREATE_CALL]
    params, unknown = operation.instance(pairs)
    violations = operation.violations(params, order=[name for name, _ in pairs])
    if violations:
        raise _violation_error(violations[0])
    twiml_error = _twiml_error(params)
    if twiml_error is not None:
        raise twiml_error
    events = params.get("StatusCallbackEvent", ["completed"])
    bad = [e for e in events if e not in _EVENTS]
    if bad:
        raise TwilioError(21626, value=bad[0])
    rejection = state.faults.take(["reject"], "calls", params["To"])
    if rejection is not None:
        status = rejection.status if isinstance(rejection.status, int) else None
        raise TwilioError(rejection.code or 21211, status=status, value=params["To"])

    resource = call_resource(
        sid=new_sid("CA"),
        account_sid=settings.twilio_account_sid,
        to=params["To"],
        from_=params["From"],
        created=utcnow(),
    )
    record = CallRecord(
        resource,
        status_callback=params.get("StatusCallback"),
        extra_params=unknown,
        twiml=params.get("Twiml"),
    )
    state.calls[resource["sid"]] = record
    plan = _plan(state, settings, record, params)
    answer = copy.deepcopy(resource)
    state.spawn(
        run_call(
            record,
            plan,
            session=request.app[SESSION],
            policy=CallbackPolicy.from_settings(settings),
            metrics=request.app[METRICS],
        )
    )
    timeout = state.faults.take(["timeout"], "calls", params["To"])
    if timeout is not None:
        record.faults.append(timeout.id)
        await state.hold(timeout.seconds)
    return web.json_response(answer, status=201)


async def fetch_call(request: web.Request) -> web.Response:
    """``GET /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``."""
    settings, state = request.app[SETTINGS], request.app[STATE]
    check_basic(request, settings)
    check_account(request, settings)
    record = state.calls.get(request.match_info["CallSid"])
    if record is None:
        raise TwilioError(20404, path=request.path)
    return web.json_response(record.resource)


def _matches(record: Record, query: Any, started: DateBounds, ended: DateBounds) -> bool:
    call = record.resource
    for param, field in (("To", "to"), ("From", "from"), ("ParentCallSid", "parent_call_sid")):
        if param in query and call[field] != query[param]:
            return False
    if "Status" in query and call["status"] != query["Status"]:
        return False
    start = parsedate_to_datetime(call["start_time"]) if call["start_time"] else record.created_at
    if not within(start, started):
        return False
    if ended and not call["end_time"]:
        return False
    return not ended or within(parsedate_to_datetime(call["end_time"]), ended)


async def list_calls(request: web.Request) -> web.Response:
    """``GET /2010-04-01/Accounts/{AccountSid}/Calls.json``, newest first, paged."""
    settings, state = request.app[SETTINGS], request.app[STATE]
    check_basic(request, settings)
    check_account(request, settings)
    query = request.query
    page_size, page = page_params(query, settings.sim_twilio_page_size, *_PAGE_SIZE)
    if "Status" in query and query["Status"] not in _STATUSES:
        raise TwilioError(400, param="Status")
    started, ended = date_bounds(query, "StartTime"), date_bounds(query, "EndTime")
    found = [
        r.resource for r in reversed(state.calls.values()) if _matches(r, query, started, ended)
    ]
    base = f"/{API_VERSION}/Accounts/{settings.twilio_account_sid}/Calls.json"
    return web.json_response(page_body("calls", found, query, base, page, page_size))
