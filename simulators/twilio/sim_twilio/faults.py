"""Fault injection: what the next matching requests should suffer.

A fault is posted as JSON to ``POST /_sim/faults``. Common fields:

- ``kind`` (required): one of :data:`KINDS`.
- ``api``: ``messages`` (default), ``calls`` or ``mail``: which create endpoint it applies to.
- ``to``: only requests to this recipient match (E.164 or email); absent = any recipient.
- ``count``: how many matching requests it applies to (default 1; ``reject`` defaults to
  ``null``, meaning for good).

Kinds and their own fields:

======================  ==================================================================
``http_500``            answer 500 (Twilio 20500 body) without processing the request
``http_429``            answer 429 (Twilio 20429 body) without processing the request;
                        optional ``retry_after`` (seconds) adds a ``Retry-After`` header
                        (whether Twilio's 2010 API sends one is not documented, so only
                        on request)
``timeout``             ``seconds`` (default 30): the request IS processed (the message is
                        created and progresses), only the response is held back
``reject``              ``code`` (default 21211), optional ``status``: answer that error
``final_status``        how the message, mail or call ends; its fields depend on ``api``:
                        messages/mail: ``status`` (``undelivered``/``failed``/``delivered``/
                        ``sent``/``read``) and optional ``error_code``;
                        calls: ``status`` (``completed`` (default)/``busy``/``no-answer``/
                        ``failed``/``canceled``) and, for ``completed`` only, optional
                        ``answered_by`` (:data:`ANSWERED_BY`; default ``human``), the
                        answering machine detection verdict when the call asked for one
``duplicate_callbacks`` deliver every status callback of the message twice
``reorder_callbacks``   deliver the status callbacks in reverse order (final before ``sent``)
======================  ==================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "ANSWERED_BY",
    "APIS",
    "CALL_FINAL_STATUSES",
    "HTTP_FAULTS",
    "KINDS",
    "Fault",
    "FaultBook",
    "FaultSpecError",
]

KINDS = frozenset(
    {
        "http_500",
        "http_429",
        "timeout",
        "reject",
        "final_status",
        "duplicate_callbacks",
        "reorder_callbacks",
    }
)
APIS = frozenset({"messages", "calls", "mail"})
#: Kinds answered before the request is processed at all.
HTTP_FAULTS = ("http_500", "http_429")
_FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "sent", "read"})
#: How a call can end (``call_enum_status`` minus the statuses a call passes through).
CALL_FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
#: ``AnsweredBy`` values of answering machine detection (see ``calls.py`` for their source).
ANSWERED_BY = frozenset(
    {
        "human",
        "machine_start",
        "machine_end_beep",
        "machine_end_silence",
        "machine_end_other",
        "fax",
        "unknown",
    }
)


class FaultSpecError(ValueError):
    """The posted fault is not understood."""


@dataclass
class Fault:
    """One injected fault; ``remaining`` is ``None`` for a persistent one."""

    id: int
    kind: str
    api: str = "messages"
    to: str | None = None
    remaining: int | None = 1
    seconds: float = 30.0
    code: int | None = None
    status: str | int | None = None
    error_code: int | None = None
    retry_after: float | None = None
    answered_by: str | None = None
    applied: int = 0

    def as_json(self) -> dict[str, Any]:
        """The admin API's view of the fault."""
        return asdict(self)


def _parse(fault_id: int, spec: Mapping[str, Any]) -> Fault:
    kind = spec.get("kind")
    if kind not in KINDS:
        raise FaultSpecError(f"kind must be one of {sorted(KINDS)}")
    api = spec.get("api", "messages")
    if api not in APIS:
        raise FaultSpecError(f"api must be one of {sorted(APIS)}")
    count = spec.get("count", None if kind == "reject" else 1)
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise FaultSpecError("count must be a positive integer or null")
    to = spec.get("to")
    if to is not None and not isinstance(to, str):
        raise FaultSpecError("to must be a string")
    if kind == "reject" and to is None:
        raise FaultSpecError("reject needs 'to'")
    seconds = spec.get("seconds", 30.0)
    if not isinstance(seconds, int | float) or seconds <= 0:
        raise FaultSpecError("seconds must be a positive number")
    fault = Fault(fault_id, kind, api, to, count, float(seconds))
    if kind == "http_429" and spec.get("retry_after") is not None:
        retry_after = spec["retry_after"]
        if not isinstance(retry_after, int | float) or retry_after <= 0:
            raise FaultSpecError("retry_after must be a positive number")
        fault.retry_after = float(retry_after)
    if kind == "reject":
        fault.code = int(spec.get("code", 21211))
        fault.status = int(spec["status"]) if "status" in spec else None
    if kind == "final_status" and api == "calls":
        _parse_call_outcome(fault, spec)
    elif kind == "final_status":
        if spec.get("answered_by") is not None:
            raise FaultSpecError("answered_by applies to api 'calls' only")
        status = spec.get("status")
        if status not in _FINAL_STATUSES:
            raise FaultSpecError(f"status must be one of {sorted(_FINAL_STATUSES)}")
        fault.status = status
        fault.error_code = int(spec["error_code"]) if spec.get("error_code") is not None else None
    return fault


def _parse_call_outcome(fault: Fault, spec: Mapping[str, Any]) -> None:
    """A call's ``final_status``: refused loudly rather than half-applied, so a test that
    asks for an outcome the simulator cannot play fails at injection, not later."""
    status = spec.get("status", "completed")
    if status not in CALL_FINAL_STATUSES:
        raise FaultSpecError(f"status must be one of {sorted(CALL_FINAL_STATUSES)} for calls")
    if spec.get("error_code") is not None:
        raise FaultSpecError("error_code applies to messages and mail, not calls")
    answered_by = spec.get("answered_by")
    if answered_by is not None and answered_by not in ANSWERED_BY:
        raise FaultSpecError(f"answered_by must be one of {sorted(ANSWERED_BY)}")
    if answered_by is not None and status != "completed":
        raise FaultSpecError("answered_by needs status 'completed': only answered calls have it")
    fault.status = status
    fault.answered_by = answered_by


class FaultBook:
    """The active faults, in injection order."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._next_id = 1

    def add(self, spec: Mapping[str, Any]) -> Fault:
        """Parse and activate a fault; raises :class:`FaultSpecError` when it is malformed."""
        fault = _parse(self._next_id, spec)
        self._next_id += 1
        self._faults.append(fault)
        return fault

    def take(self, kinds: Iterable[str], api: str, to: str | None) -> Fault | None:
        """The oldest active fault of one of ``kinds`` matching this request, used up once."""
        wanted = set(kinds)
        for fault in self._faults:
            if fault.kind not in wanted or fault.api != api:
                continue
            if fault.to is not None and fault.to != to:
                continue
            fault.applied += 1
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
            return fault
        return None

    def active(self) -> list[Fault]:
        """The faults still waiting to apply."""
        return list(self._faults)

    def clear(self) -> None:
        """Forget every fault."""
        self._faults.clear()
