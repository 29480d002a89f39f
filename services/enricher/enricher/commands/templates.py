"""``mlc templates check``: render every message template in every language with sample data.

Fails (exit 1) when a template uses a variable the enricher does not give (rendering is strict,
so that text would never reach a customer), when a message type of the rules lacks a language,
or when a template cannot be parsed. Warns when an SMS text can take more than 2 segments with
long sample values, or leaves GSM-7 (UCS-2 costs up to three times as much).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import jinja2

from enricher.rules import LANGUAGES
from enricher.texts import MESSAGES, VARIABLES, Texts

__all__ = ["SAMPLE", "add_arguments", "check", "run"]

Say = Callable[[str], None]

#: Long but plausible values: what a template must survive in two SMS segments.
SAMPLE: dict[str, Any] = {
    "name": "Alexandra-Charlotte",
    "company": "Groothandel Van der Heijden-Verbruggen B.V.",
    "number": "26012345",
    "amount": Decimal("123456.78"),
    "currency": "EUR",
    "due_date": date(2026, 12, 14),
    "order_date": date(2026, 11, 30),
    "delivery_date": date(2026, 12, 7),
    "your_ref": "PO-2026-004711",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check"])
    parser.add_argument(
        "--max-segments", type=int, default=2, help="warn above this many SMS segments"
    )


def check(texts: Texts, say: Say, *, max_segments: int = 2) -> tuple[int, int]:
    """(errors, warnings) over every message type and language."""
    errors = warnings = 0
    present = set(texts.templates())
    if set(SAMPLE) != set(VARIABLES):  # the sample must give what the enricher gives
        raise RuntimeError(f"SAMPLE and texts.VARIABLES differ: {set(SAMPLE) ^ set(VARIABLES)}")
    for message in MESSAGES:
        for lang in LANGUAGES:
            name = f"{message}.{lang}"
            if (message, lang) not in present:
                say(f"error   {name}: no template")
                errors += 1
                continue
            try:
                out = texts.render(message, lang, **SAMPLE)
            except jinja2.TemplateError as exc:
                say(f"error   {name}: {type(exc).__name__}: {exc}")
                errors += 1
                continue
            if not out.subject or not out.text:
                say(f"error   {name}: an empty subject or text")
                errors += 1
            if out.encoding != "GSM-7":
                say(f"warning {name}: SMS text leaves GSM-7 ({out.encoding})")
                warnings += 1
            if out.segments > max_segments:
                say(f"warning {name}: SMS text can take {out.segments} segments")
                warnings += 1
            say(f"ok      {name}: {len(out.text)} chars, {out.encoding}, {out.segments} seg")
    return errors, warnings


async def run(settings: object, args: argparse.Namespace, say: Say) -> int:
    errors, warnings = check(Texts(), say, max_segments=args.max_segments)
    say(f"{errors} error(s), {warnings} warning(s)")
    return 1 if errors else 0
