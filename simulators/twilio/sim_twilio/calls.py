"""Calls API: ``POST .../Calls.json`` and ``GET .../Calls/{CallSid}.json``, plus call progress.

Checks, in order: auth (20003), account (20404), ``http_500``/``http_429`` faults, the form
against the fixture derived from ``CreateCall`` (no To 21201, no From 21213, bad ``Url``
21205, other violations 21200; none of ``Url``/``Twiml``/``ApplicationSid`` 21200, the
``x-twilio.conditional`` group), ``StatusCallbackEvent`` values (21626), ``reject`` faults.

The spec says that when ``Twiml`` and ``Url`` are both given ``Twiml`` is ignored, so more than
one of the three is accepted rather than refused.

A created call goes queued -> ringing -> in-progress -> completed, one step per
``callback_delay``. Status callbacks go only for the events named in ``StatusCallbackEvent``
(``completed`` alone by default), each with a ``SequenceNumber`` counting from 0 and a
``Timestamp``; ``completed`` adds ``CallDuration`` (seconds) and ``Duration`` (minutes).
"""

from __future__ import annotations

import asyncio
import copy
import math
from dataclasses import dataclass
from datetime import timedelta

import aiohttp
from aiohttp import web

from sim_twilio.auth import check_account, check_basic
from sim_twilio.callbacks import CallbackPolicy, deliver
from sim_twilio.errors import TwilioError
from sim_twilio.faults import HTTP_FAULTS
from sim_twilio.forms import form_pairs
from sim_twilio.keys import CREATE_CALL, METRICS, SESSION, SETTINGS, STATE
from sim_twilio.metrics import Metrics
from sim_twilio.resources import API_VERSION, call_resource, new_sid, rfc2822
from sim_twilio.state import Delivery, Record, utcnow
from sim_twilio.validation import Violation

__all__ = ["CallPlan", "create_call", "fetch_call", "run_call"]

#: Event -> (resource status, CallStatus in the callback), in the order a call goes through.
_PROGRESS = {
    "initiated": ("queued", "initiated"),
    "ringing": ("ringing", "ringing"),
    "answered": ("in-progress", "in-progress"),
    "completed": ("completed", "completed"),
}


@dataclass(frozen=True)
class CallPlan:
    """What will happen to one call."""

    events: frozenset[str]
    delay: float
    duration: int
    duplicate: bool = False
    reorder: bool = False


def _violation_error(violation: Violation) -> TwilioError:
    if violation.keyword == "required":
        return TwilioError(21201 if violation.param == "To" else 21213)
    if violation.keyword == "conditional":
        return TwilioError(21200, detail="a 'Url', 'Twiml' or 'ApplicationSid' is required")
    if violation.param == "Url":
        return TwilioError(21205, value=violation.value)
    return TwilioError(21200, detail=f"invalid parameter '{violation.param}'")


def _call_params(record: Record, callback_status: str, sequence: int) -> list[tuple[str, str]]:
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
    if callback_status == "completed":
        seconds = int(call["duration"] or 0)
        params += [("CallDuration", str(seconds)), ("Duration", str(math.ceil(seconds / 60)))]
    return params


async def run_call(
    record: Record,
    plan: CallPlan,
    *,
    session: aiohttp.ClientSession,
    policy: CallbackPolicy,
    metrics: Metrics,
) -> None:
    """Walk the call through its progress events, posting the requested callbacks."""
    call = record.resource
    sequence = 0
    pending: list[Delivery] = []
    for event, (status, callback_status) in _PROGRESS.items():
        if event != "initiated":
            await asyncio.sleep(plan.delay)
        now = utcnow()
        call["status"], call["date_updated"] = status, rfc2822(now)
        if event == "answered":
            call["start_time"] = rfc2822(now)
        if event == "completed":
            call["duration"] = str(plan.duration)
            call["end_time"] = rfc2822(now + timedelta(seconds=plan.duration))
        if not record.status_callback or event not in plan.events:
            continue
        params = _call_params(record, callback_status, sequence)
        sequence += 1
        copies = [Delivery(callback_status, record.status_callback, params)]
        if plan.duplicate:
            copies.append(Delivery(callback_status, record.status_callback, params))
        if plan.reorder:
            pending[:0] = copies
            continue
        for delivery in copies:
            record.callbacks.append(delivery)
            await deliver(session, delivery, policy, metrics, "call")
    for delivery in pending:
        record.callbacks.append(delivery)
        await deliver(session, delivery, policy, metrics, "call")


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
    events = params.get("StatusCallbackEvent", ["completed"])
    bad = [e for e in events if e not in _PROGRESS]
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
    record = Record(resource, status_callback=params.get("StatusCallback"), extra_params=unknown)
    state.calls[resource["sid"]] = record
    taken = {
        k: state.faults.take([k], "calls", params["To"])
        for k in ("duplicate_callbacks", "reorder_callbacks")
    }
    record.faults += [f.id for f in taken.values() if f is not None]
    plan = CallPlan(
        events=frozenset(events),
        delay=settings.sim_twilio_callback_delay,
        duration=settings.sim_twilio_call_duration,
        duplicate=taken["duplicate_callbacks"] is not None,
        reorder=taken["reorder_callbacks"] is not None,
    )
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
