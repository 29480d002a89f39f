"""Validate form-encoded requests against the fixtures derived from Twilio's OpenAPI description.

A form body is a list of (name, value) pairs, all strings. :meth:`Operation.instance` turns it
into a JSON instance the schema can judge: a parameter typed ``array`` collects every repeated
key (``MediaUrl``, ``StatusCallbackEvent``); a scalar takes its first value, coerced to the
schema's ``integer``/``number``/``boolean`` when it parses (left a string otherwise, so the type
check fails). Names the schema does not know are returned apart: Twilio ignores them.

:meth:`Operation.violations` lists what is wrong, in a fixed order: missing required
parameters, then schema violations in the order the parameters were sent, then the
``x-twilio.conditional`` groups (which schema validators, Prism included, do not enforce).
Callers map the first violation to a Twilio error code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker

__all__ = ["FORMATS", "Operation", "Violation", "load_fixture", "load_operation"]

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_CHANNEL = re.compile(r"^[a-z][a-z0-9-]*:\S+$")  # whatsapp:+1..., messenger:..., rcs:...
_SHORT_CODE = re.compile(r"^\d{3,8}$")
_ALPHANUMERIC = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
_ENDPOINT = re.compile(r"^(client|sip|app):\S+$")


def is_phone_number(value: object) -> bool:
    """E.164, a channel address, a short code or an alphanumeric sender ID."""
    if not isinstance(value, str):
        return True
    return any(p.match(value) for p in (_E164, _CHANNEL, _SHORT_CODE, _ALPHANUMERIC))


def is_endpoint(value: object) -> bool:
    """A call endpoint: a phone number or a ``client:``/``sip:``/``app:`` address."""
    return not isinstance(value, str) or is_phone_number(value) or bool(_ENDPOINT.match(value))


def is_web_url(value: object) -> bool:
    """An absolute http(s) URL with a host; Twilio refuses underscores in the host and URLs
    longer than 4000 characters (twilio.com/docs/api/errors/21609)."""
    if not isinstance(value, str):
        return True
    if len(value) > 4000:
        return False
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and "_" not in (host or "")


def is_iso_datetime(value: object) -> bool:
    """ISO 8601 date-time (``SendAt``)."""
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return "T" in value or " " in value


#: Checkers for the spec's formats. Formats not listed here (twiml, currency, http-method, ...)
#: are not checked, as JSON Schema prescribes for unknown formats.
FORMATS = FormatChecker(formats=())
for _name, _check in {
    "phone-number": is_phone_number,
    "endpoint": is_endpoint,
    "uri": is_web_url,
    "date-time": is_iso_datetime,
}.items():
    FORMATS.checks(_name)(_check)


@dataclass(frozen=True)
class Violation:
    """One problem with a request: the parameter (if any), the JSON Schema keyword (or
    ``required``/``conditional``) and the offending value."""

    param: str | None
    keyword: str
    value: Any = None
    group: tuple[str, ...] = ()


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "integer" in kinds and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if "number" in kinds:
        try:
            return float(value)
        except ValueError:
            return value
    if "boolean" in kinds and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


class Operation:
    """One derived fixture: request schema, conditional groups and the 201 response schema."""

    def __init__(self, fixture: dict[str, Any]) -> None:
        self.fixture = fixture
        self._validator = Draft202012Validator(fixture["request"], format_checker=FORMATS)

    @property
    def name(self) -> str:
        """The operationId (``CreateMessage``)."""
        return self.fixture["provenance"]["operationId"]  # type: ignore[no-any-return]

    @property
    def request_schema(self) -> dict[str, Any]:
        """The form body as JSON Schema."""
        return self.fixture["request"]  # type: ignore[no-any-return]

    @property
    def response_schema(self) -> dict[str, Any]:
        """The 201 response resource as JSON Schema."""
        return self.fixture["response"]["schema"]  # type: ignore[no-any-return]

    @property
    def conditional(self) -> list[list[str]]:
        """Groups of which at least one parameter must be present."""
        return self.fixture["conditional"]["params"]  # type: ignore[no-any-return]

    def instance(self, pairs: Iterable[tuple[str, str]]) -> tuple[dict[str, Any], list[list[str]]]:
        """(JSON instance of the known parameters, unknown (name, value) pairs)."""
        properties = self.request_schema["properties"]
        instance: dict[str, Any] = {}
        unknown: list[list[str]] = []
        for name, value in pairs:
            schema = properties.get(name)
            if schema is None:
                unknown.append([name, value])
            elif schema.get("type") == "array":
                item = schema.get("items", {})
                instance.setdefault(name, []).append(_coerce(value, item))
            elif name not in instance:
                instance[name] = _coerce(value, schema)
        return instance, unknown

    def violations(self, instance: dict[str, Any], order: Sequence[str] = ()) -> list[Violation]:
        """Everything wrong with ``instance``; ``order`` is the parameter order as sent."""
        found = [
            Violation(name, "required")
            for name in self.request_schema.get("required", [])
            if name not in instance
        ]
        rank = {name: i for i, name in enumerate(order)}
        errors = sorted(
            self._validator.iter_errors(instance),
            key=lambda e: rank.get(str(e.path[0]) if e.path else "", len(rank)),
        )
        for error in errors:
            if error.validator == "required":
                continue  # reported above, in the schema's order
            param = str(error.path[0]) if error.path else None
            value = instance.get(param) if param is not None else None
            found.append(Violation(param, str(error.validator), value))
        found.extend(
            Violation(None, "conditional", group=tuple(group))
            for group in self.conditional
            if not any(name in instance for name in group)
        )
        return found


def load_fixture(name: str) -> dict[str, Any]:
    """The raw fixture ``sim_twilio/openapi/<name>.json`` (e.g. ``list_message``)."""
    text = resources.files("sim_twilio.openapi").joinpath(f"{name}.json").read_text("utf-8")
    return dict(json.loads(text))


def load_operation(name: str) -> Operation:
    """Load ``sim_twilio/openapi/<name>.json`` (e.g. ``create_message``)."""
    text = resources.files("sim_twilio.openapi").joinpath(f"{name}.json").read_text("utf-8")
    return Operation(json.loads(text))
