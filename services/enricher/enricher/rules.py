"""Notification rules as configuration: the pydantic model of a rules file.

A rule says which document and business fact, optional conditions on the document, the
audience, the channels in order of preference, the urgency, the template and the timing
(``now`` or ``DueDate + 3 days``). ``rulebook`` loads files into a ``Policy`` per connection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from common.contracts import Channel
from enricher.documents import KINDS, DocumentKind, Party, exact_day_start

__all__ = [
    "LANGUAGES",
    "Audience",
    "Conditions",
    "Policy",
    "PolicySettings",
    "QuietHours",
    "Rule",
    "RulesError",
    "RulesFile",
    "Timing",
]

#: Languages every default message type has a template in.
LANGUAGES = ("nl", "en", "de", "fr")
Language = Literal["nl", "en", "de", "fr"]

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
        """The moment the notice is due, or None when the document lacks the date.

        A date field counts from the start of its day (``exact_day_start``: the same day
        whichever midnight Exact wrote), so a DST change never moves it to another day;
        quiet hours then place the send in the recipient's local window."""
        if self.field is None:
            return now
        start = exact_day_start(doc.get(self.field))
        return None if start is None else start + self.offset

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
