"""structlog set-up: JSON lines with the bound context, masked just before rendering.

Every chain ends ``... -> mask -> renderer``: no phone number, email address, token or secret
reaches a log line in clear, whatever a caller passed in.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

__all__ = ["configure_logging", "mask_error", "mask_event", "mask_text"]

#: Keys whose values are secrets whatever they hold.
_SECRET_KEYS = re.compile(r"(secret|token|password|authorization|api_key|hashcode|signature)", re.I)
#: Phone numbers: a + and 7-15 digits, allowing spaces, dots, dashes and brackets in between.
_PHONE = re.compile(r"\+(?:[\s().-]*\d){7,15}")
#: Email addresses.
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
#: A number of 7-15 digits without ``+``, standing alone (separators allowed): how a vendor's
#: error quotes a phone number it was given in national or bare international form.
_BARE_NUMBER = re.compile(r"(?<![\w+*])\d(?:[\s().-]*\d){6,14}(?!\w)")
#: Bearer tokens in free text.
_BEARER = re.compile(r"(Bearer\s+)\S+", re.I)


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "+" + "*" * (len(digits) - 2) + digits[-2:]


def mask_text(text: str) -> str:
    """Mask phone numbers (keep the last two digits), emails (first letter + domain), tokens.

    Each pattern runs only on text holding the character it cannot match without (``+``,
    ``@``, the ``r`` of ``Bearer``): most values of a log line are ids and names."""
    if "+" in text:
        text = _PHONE.sub(_mask_phone, text)
    if "@" in text:
        text = _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    if "r" in text or "R" in text:
        text = _BEARER.sub(r"\1***", text)
    return text


def mask_error(text: str) -> str:
    """A vendor's error text as the audit trail and the CLI show it: ``mask_text``, then any
    bare number of 7-15 digits keeps only its last two, as a recipient without ``+`` is shown
    (Twilio's 21211 quotes the ``To`` it was given: ``The 'To' number 0612345678 is not a
    valid phone number``). Not for logs in general: Exact's division codes have 7 digits."""
    masked = mask_text(text)
    return _BARE_NUMBER.sub(lambda m: _mask_bare(m.group(0)), masked)


def _mask_bare(number: str) -> str:
    digits = re.sub(r"\D", "", number)
    return "*" * (len(digits) - 2) + digits[-2:]


@functools.lru_cache(maxsize=1024)
def _secret_key(key: str) -> bool:
    return _SECRET_KEYS.search(key) is not None


def _mask_value(key: str, value: Any) -> Any:
    if value is not None and _secret_key(key):
        return "***"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, v) for v in value]
    return value


def mask_event(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask every value of the event dict (runs just before rendering)."""
    for key, value in list(event.items()):
        if key == "exc_info":
            continue
        event[key] = _mask_value(key, value)
    return event


def configure_logging(service: str, *, json: bool = True, level: str = "INFO") -> None:
    """Configure structlog (and stdlib logging) for ``service``. Call once, in ``__main__``."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")
