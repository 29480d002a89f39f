"""Notification rules as configuration: a YAML file per connection, validated by pydantic.

::

    rules/default.yaml (shipped)  ──┐
                                    ├─ merge ─▶ Policy(settings, rules) per connection
    MLC_ENRICHER_RULES_PATH ────────┘            (reloaded on SIGHUP; a bad file keeps the old)
      a file: every connection's file
      a directory: <connection id>.yaml, else the default set

A connection's file ``extends: default`` (the default) or ``none``. With ``default`` its
``settings`` override the default settings key by key, a rule with the name of a default rule
replaces it, other rules are added, and ``disable``/``enable`` switch rules by name. Errors
name the file, the line and the field: ``acme.yaml:12: rules.1.channels.0: Input should be
'sms', 'email' or 'voice'``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.contracts import Channel
from enricher.documents import KINDS, DocumentKind, Party, exact_datetime

__all__ = [
    "DEFAULT_RULES",
    "LANGUAGES",
    "Audience",
    "Conditions",
    "Policy",
    "PolicySettings",
    "QuietHours",
    "Rule",
    "RuleBook",
    "RulesError",
    "RulesFile",
    "Timing",
    "load_file",
    "load_policy",
]

#: Languages every default message type has a template in.
LANGUAGES = ("nl", "en", "de", "fr")
Language = Literal["nl", "en", "de", "fr"]
#: The shipped rule set's resource name inside the package.
DEFAULT_RULES = "default.yaml"

_TIMING = re.compile(
    r"^\s*(?P<field>[A-Za-z]+)\s*(?:(?P<sign>[+-])\s*(?P<n>\d+)\s*"
    r"(?P<unit>days?|hours?|minutes?|seconds?))?\s*$"
)
_WINDOW = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")
_NAME = r"^[a-z0-9][a-z0-9-]*$"


class RulesError(ValueError):
    """A rules file that cannot be used; the message names the file, line and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timing(_Model):
    """When a rule's notice is due: ``now``, or a document date plus an offset."""

    field: str | None = None
    offset: timedelta = timedelta(0)

    @classmethod
    def parse(cls, text: str) -> Timing:
        if text.strip().lower() == "now":
            return cls()
        match = _TIMING.match(text)
        if not match:
            raise ValueError(f"timing {text!r} is not 'now' or '<DateField> + <n> days'")
        n = int(match["n"] or 0) * (-1 if match["sign"] == "-" else 1)
        unit = (match["unit"] or "days").rstrip("s") + "s"
        return cls(field=match["field"], offset=timedelta(**{unit: n}))

    @property
    def is_now(self) -> bool:
        return self.field is None

    def due(self, doc: Mapping[str, Any], now: datetime) -> datetime | None:
        """The moment the notice is due, or None when the document lacks the date."""
        if self.field is None:
            return now
        base = exact_datetime(doc.get(self.field))
        return None if base is None else base + self.offset

    def __str__(self) -> str:
        if self.field is None:
            return "now"
        days = self.offset / timedelta(days=1)
        if days == int(days):
            return f"{self.field} {'+' if days >= 0 else '-'} {abs(int(days))} days"
        return f"{self.field} {'+' if days >= 0 else '-'} {abs(self.offset.total_seconds()):g} s"


class Conditions(_Model):
    """Optional conditions on the document; all given must hold."""

    amount_at_least: Decimal | None = None
    amount_below: Decimal | None = None
    currencies: tuple[str, ...] | None = None
    journals: tuple[str, ...] | None = None
    #: Account classification ids (``Classification1``..``8`` of the account).
    account_classifications: tuple[str, ...] | None = None

    def hold(self, kind: DocumentKind, doc: Mapping[str, Any], account: Mapping[str, Any]) -> bool:
        """True when every condition given holds for the document and its account."""
        amount = kind.amount(dict(doc))
        if self.amount_at_least is not None and amount < self.amount_at_least:
            return False
        if self.amount_below is not None and amount >= self.amount_below:
            return False
        currency = str(doc.get(kind.currency_field) or "EUR").upper()
        if self.currencies is not None and currency not in {c.upper() for c in self.currencies}:
            return False
        if self.journals is not None:
            journal = str(doc.get(kind.journal_field) or "").strip() if kind.journal_field else ""
            if journal not in {j.strip() for j in self.journals}:
                return False
        if self.account_classifications is not None:
            wanted = {c.lower() for c in self.account_classifications}
            held = {str(account.get(f"Classification{n}") or "").lower() for n in range(1, 9)}
            if not wanted & held:
                return False
        return True


class Audience(_Model):
    party: Party
    #: A key of ``settings.roles``; None means the document's contact, else the main contact.
    role: str | None = None


class Rule(_Model):
    name: str = Field(pattern=_NAME)
    enabled: bool = True
    entity: tuple[str, ...]
    fact: str
    when: Conditions = Conditions()
    audience: Audience
    #: In order of preference; a contact's own preference may move one of them first.
    channels: tuple[Channel, ...] = Field(min_length=1)
    urgency: Literal["normal", "urgent"] = "normal"
    template: str = Field(pattern=r"^[a-z0-9_]+$")
    timing: Timing = Timing()
    #: Send only while the invoice is unpaid (checked right before sending); payment, a
    #: matching credit note or an opt-out ends it.
    requires_unpaid: bool = False

    @field_validator("entity", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("timing", mode="before")
    @classmethod
    def _timing(cls, value: Any) -> Any:
        return Timing.parse(value) if isinstance(value, str) else value

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: tuple[Channel, ...]) -> tuple[Channel, ...]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value

    @model_validator(mode="after")
    def _fits_documents(self) -> Rule:
        for entity in self.entity:
            kind = KINDS.get(entity)
            if kind is None:
                raise ValueError(f"entity {entity!r} is not one of {', '.join(KINDS)}")
            if self.fact not in kind.facts:
                raise ValueError(
                    f"{entity} has no fact {self.fact!r} (it has {', '.join(kind.facts)})"
                )
            if kind.party != self.audience.party:
                raise ValueError(f"{entity} goes to a {kind.party}, not a {self.audience.party}")
            if self.timing.field and self.timing.field not in kind.date_fields:
                raise ValueError(
                    f"{entity} has no date {self.timing.field!r} "
                    f"(it has {', '.join(kind.date_fields)})"
                )
        if self.requires_unpaid and not set(self.entity) <= {"SalesInvoices", "SalesEntries"}:
            raise ValueError("requires_unpaid applies to SalesInvoices and SalesEntries only")
        return self

    @property
    def notice(self) -> str:
        """The fact the notice announces (idempotency): the trigger for a rule sent at once,
        the rule's own name for a timed one (two reminders of one invoice are two facts)."""
        return self.fact if self.timing.is_now else f"{self.fact}:{self.name}"


class Window(_Model):
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> Window:
        match = _WINDOW.match(text.replace(" ", ""))
        if not match:
            raise ValueError(f"{text!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        end = time(23, 59, 59) if (h2, m2) == (24, 0) else time(h2, m2)
        window = cls(start=time(h1, m1), end=end)
        if window.end <= window.start:
            raise ValueError(f"{text!r} ends before it starts")
        return window


class QuietHours(_Model):
    """When non-urgent notices may go out, in the recipient's time zone."""

    enabled: bool = True
    weekdays: Window = Window.parse("08:00-21:00")
    weekends: Window = Window.parse("10:00-18:00")

    @field_validator("weekdays", "weekends", mode="before")
    @classmethod
    def _window(cls, value: Any) -> Any:
        return Window.parse(value) if isinstance(value, str) else value


class PolicySettings(_Model):
    #: The company's name in texts; unset: the division's name in Exact.
    company_name: str | None = None
    #: Language when neither the contact nor the account names a supported one.
    language: Language = "nl"
    #: Country for numbers written without a country code, and for the time zone.
    country: str = Field(default="NL", pattern=r"^[A-Z]{2}$")
    time_zone: str = "Europe/Amsterdam"
    quiet_hours: QuietHours = QuietHours()
    #: Treat Exact's ``IsMailingExcluded`` (a marketing exclusion) as an opt-out too.
    honour_mailing_exclusion: bool = False
    #: Role -> words matched (case-insensitive, as a substring) in ``JobTitleDescription``.
    roles: dict[str, tuple[str, ...]] = {}

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class RulesFile(_Model):
    version: Literal[1] = 1
    extends: Literal["default", "none"] = "default"
    settings: PolicySettings = PolicySettings()
    rules: tuple[Rule, ...] = ()
    disable: tuple[str, ...] = ()
    enable: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> RulesFile:
        names = [rule.name for rule in self.rules]
        twice = {name for name in names if names.count(name) > 1}
        if twice:
            raise ValueError(f"rule names used twice: {', '.join(sorted(twice))}")
        return self


@dataclass(frozen=True)
class Policy:
    """A connection's settings and enabled rules, merged from the default and its own file."""

    settings: PolicySettings
    rules: tuple[Rule, ...]
    source: str

    def matching(self, entity: str, fact: str) -> list[Rule]:
        return [r for r in self.rules if r.enabled and entity in r.entity and r.fact == fact]

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name and r.enabled), None)

    def role_words(self, role: str | None) -> tuple[str, ...]:
        return self.settings.roles.get(role, ()) if role else ()


# loading --------------------------------------------------------------------------------------


def _lines(node: yaml.Node, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], int]]:
    """(path, 1-based line) of every node: where a validation error's ``loc`` points."""
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield (*path, key.value), key.start_mark.line + 1
            for sub, line in _lines(value, (*path, key.value)):
                if sub != (*path, key.value):
                    yield sub, line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _lines(item, (*path, index))


def _parse(text: str, name: str) -> RulesFile:
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}" if mark else "?"
        raise RulesError(f"{name}:{line}: not valid YAML: {exc}") from exc
    lines = dict(_lines(node)) if node is not None else {}
    try:
        return RulesFile.model_validate(data or {})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            # the deepest path the file has a line for (a missing field: its parent's line)
            at = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), 1)
            where = ".".join(str(part) for part in loc) or "(file)"
            problems.append(f"{name}:{at}: {where}: {error['msg']}")
        raise RulesError("\n".join(problems)) from exc


def load_file(path: Path) -> RulesFile:
    """Parse and validate one rules file; ``RulesError`` names file, line and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror}") from exc
    return _parse(text, str(path))


def default_rules() -> RulesFile:
    text = resources.files("enricher").joinpath("rules", DEFAULT_RULES).read_text("utf-8")
    return _parse(text, f"enricher/rules/{DEFAULT_RULES}")


def _merge(base: RulesFile, own: RulesFile) -> RulesFile:
    if own.extends == "none":
        return own
    overrides = {name: getattr(own.settings, name) for name in own.settings.model_fields_set}
    settings = base.settings.model_copy(update=overrides)
    own_rules = {rule.name: rule for rule in own.rules}
    rules = [own_rules.pop(rule.name, rule) for rule in base.rules] + list(own_rules.values())
    return RulesFile(
        settings=settings,
        rules=tuple(rules),
        disable=base.disable + own.disable,
        enable=base.enable + own.enable,
    )


def _policy(merged: RulesFile, source: str) -> Policy:
    names = {rule.name for rule in merged.rules}
    unknown = sorted((set(merged.disable) | set(merged.enable)) - names)
    if unknown:
        raise RulesError(f"{source}: disable/enable name no rule: {', '.join(unknown)}")
    rules = tuple(
        rule.model_copy(update={"enabled": True})
        if rule.name in merged.enable
        else rule.model_copy(update={"enabled": False})
        if rule.name in merged.disable
        else rule
        for rule in merged.rules
    )
    for rule in rules:
        if rule.audience.role and rule.audience.role not in merged.settings.roles:
            raise RulesError(
                f"{source}: rule {rule.name}: role {rule.audience.role!r} is not in settings.roles"
            )
    return Policy(merged.settings, rules, source)


def load_policy(path: Path | None) -> Policy:
    """The default set merged with the file at ``path`` (None: the default set alone)."""
    base = default_rules()
    if path is None:
        return _policy(base, f"enricher/rules/{DEFAULT_RULES}")
    return _policy(_merge(base, load_file(path)), str(path))


class RuleBook:
    """Each connection's policy, read from ``path`` (a file, or a directory of
    ``<connection id>.yaml``), kept until ``reload`` reads a valid replacement."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._policies: dict[str, Policy] = {}
        self._default = load_policy(path if path and path.is_file() else None)
        errors = self.reload()
        if errors:  # refuse to start on a broken file; a reload keeps the last good one
            raise RulesError("\n".join(errors))

    def _file_of(self, connection_id: str) -> Path | None:
        if self._path is None or self._path.is_file():
            return self._path
        candidate = self._path / f"{connection_id}.yaml"
        return candidate if candidate.is_file() else None

    def reload(self) -> list[str]:
        """Read every file again; returns the errors of files that were kept as they were."""
        errors: list[str] = []
        try:
            self._default = load_policy(self._path if self._path and self._path.is_file() else None)
        except RulesError as exc:
            errors.append(str(exc))
        fresh: dict[str, Policy] = {}
        if self._path is not None and self._path.is_dir():
            for file in sorted(self._path.glob("*.yaml")):
                try:
                    fresh[file.stem] = load_policy(file)
                except RulesError as exc:
                    errors.append(str(exc))
                    if file.stem in self._policies:
                        fresh[file.stem] = self._policies[file.stem]
        self._policies = fresh
        return errors

    def for_connection(self, connection_id: str) -> Policy:
        return self._policies.get(connection_id, self._default)
