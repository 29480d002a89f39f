"""Message texts, rendered with jinja2 from per-language templates (``templates/*.j2``).

SMS texts stay in GSM-7 on purpose: one non-GSM character (a curly quote, a non-breaking space)
switches the whole message to UCS-2, 70 characters a segment, and can double its price.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import jinja2

__all__ = ["Renderer"]

_LANGUAGES = ("nl", "en")


def _money(amount: Any, currency: str | None) -> str:
    value = Decimal(str(amount or 0)).quantize(Decimal("0.01"))
    return f"{currency or 'EUR'} {value:,.2f}"


class Renderer:
    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("enricher", "templates"),
            autoescape=False,  # plain-text SMS, never HTML  # noqa: S701
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=False,
        )
        self._env.filters["money"] = _money

    def render(self, template: str, language: str | None, **data: Any) -> str:
        """Render ``<template>.<language>.j2``, falling back to English."""
        lang = language if language in _LANGUAGES else "en"
        return self._env.get_template(f"{template}.{lang}.j2").render(**data).strip()
