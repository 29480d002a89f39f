"""Message texts: jinja2 templates per message type and language, amounts and dates by Babel.

``templates/<message>.<language>.j2`` has three blocks: ``subject`` and ``email`` for email,
``text`` for SMS and voice. Rendering is strict (``StrictUndefined``): a variable a template
uses but the caller did not give fails, so a customer never reads a blank.

SMS cost: a text in GSM-7 fits 160 characters in one segment (153 a segment when split); one
character outside GSM-7 (a curly quote, a non-breaking space, a ``ç``) switches the whole text
to UCS-2, 70 a segment (67 when split), and can double or triple its price. Babel writes
``€ 1.210,00`` with a non-breaking space (U+00A0; U+202F in French), so formatted values are
given plain spaces before they reach a text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import jinja2
from babel.dates import format_date
from babel.numbers import format_currency

from enricher.rules import LANGUAGES

__all__ = [
    "GSM7",
    "MESSAGES",
    "Rendered",
    "Texts",
    "sms_segments",
]

#: Message types with a template in every language.
MESSAGES = (
    "invoice_issued",
    "invoice_overdue",
    "order_confirmed",
    "purchase_order",
    "purchase_invoice_received",
    "payment_received",
)
#: Every variable a template may use (always given; None when the document lacks it).
VARIABLES = (
    "name",
    "company",
    "number",
    "amount",
    "currency",
    "due_date",
    "order_date",
    "delivery_date",
    "your_ref",
)

_LOCALES = {"nl": "nl_NL", "en": "en_GB", "de": "de_DE", "fr": "fr_FR"}
_DATE_PATTERNS = {"nl": "dd-MM-yyyy", "en": "dd/MM/yyyy", "de": "dd.MM.yyyy", "fr": "dd/MM/yyyy"}
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_EXTENSION = "^{}\\[~]|€\f"
#: The GSM 03.38 alphabet: basic characters (one septet) and extension characters (two).
GSM7 = frozenset(_BASIC + _EXTENSION)


def sms_segments(text: str) -> tuple[str, int]:
    """(``"GSM-7"`` or ``"UCS-2"``, the number of segments the text is sent in)."""
    if all(ch in GSM7 for ch in text):
        units = sum(2 if ch in _EXTENSION else 1 for ch in text)
        return "GSM-7", 1 if units <= 160 else math.ceil(units / 153)
    units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)  # UTF-16 code units
    return "UCS-2", 1 if units <= 70 else math.ceil(units / 67)


def _plain(text: str) -> str:
    return text.replace("\u00a0", " ").replace("\u202f", " ")


@jinja2.pass_context
def _money(context: Any, amount: Any, currency: str | None) -> str:
    value = Decimal(str(amount or 0))
    return _plain(format_currency(value, currency or "EUR", locale=context["_locale"]))


@jinja2.pass_context
def _day(context: Any, value: date | datetime | None) -> str:
    if value is None:
        return ""
    day = value.date() if isinstance(value, datetime) else value
    return format_date(day, _DATE_PATTERNS[context["_language"]], locale=context["_locale"])


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    email: str
    encoding: str
    segments: int


class Texts:
    def __init__(self, loader: jinja2.BaseLoader | None = None) -> None:
        self._env = jinja2.Environment(
            loader=loader or jinja2.PackageLoader("enricher", "templates"),
            autoescape=False,  # plain text: SMS, voice and text email, never HTML  # noqa: S701
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
            # the templates ship with the package: no file check before every render
            auto_reload=False,
        )
        self._env.filters["money"] = _money
        self._env.filters["day"] = _day

    def render(
        self,
        message: str,
        language: str,
        /,
        parts: Literal["all", "text", "email"] = "all",
        **data: Any,
    ) -> Rendered:
        """The blocks of ``<message>.<language>.j2``; an unknown language renders English.
        ``parts``: ``"all"``, ``"text"`` (SMS and voice: the subject and email left empty) or
        ``"email"`` (the subject and the email; the text left empty, counted as no segments).
        Raises ``jinja2.UndefinedError`` for a variable not given."""
        lang = language if language in LANGUAGES else "en"
        template = self._env.get_template(f"{message}.{lang}.j2")
        context = template.new_context({**data, "_language": lang, "_locale": _LOCALES[lang]})

        def block(name: str) -> str:
            return "".join(template.blocks[name](context)).strip()

        text = _plain(block("text")) if parts != "email" else ""
        encoding, segments = sms_segments(text) if text else ("GSM-7", 0)
        if parts == "text":
            return Rendered("", text, "", encoding, segments)
        return Rendered(block("subject"), text, block("email"), encoding, segments)

    def templates(self) -> list[tuple[str, str]]:
        """(message, language) of every template file."""
        found = []
        for name in self._env.list_templates(extensions=["j2"]):
            message, lang, _ = name.rsplit(".", 2)
            found.append((message, lang))
        return sorted(found)
