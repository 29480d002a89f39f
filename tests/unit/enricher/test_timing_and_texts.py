"""Quiet hours across DST changes, and texts: Babel formats, strict variables, SMS segments."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import jinja2
import pytest

from enricher.rules import QuietHours
from enricher.texts import Texts, sms_segments
from enricher.timing import next_allowed, zone_of_country

AMS = "Europe/Amsterdam"
DEFAULT = QuietHours()


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "zone", "allowed"),
    [
        # Tuesday 12:00 CET: inside the weekday window
        (utc(2026, 12, 1, 11), AMS, utc(2026, 12, 1, 11)),
        # Tuesday 07:30 CET: held until 08:00 CET (07:00 UTC)
        (utc(2026, 12, 1, 6, 30), AMS, utc(2026, 12, 1, 7)),
        # Tuesday 21:30 CET: until Wednesday 08:00
        (utc(2026, 12, 1, 20, 30), AMS, utc(2026, 12, 2, 7)),
        # Friday 22:00 CET: until Saturday 10:00 (weekend window)
        (utc(2026, 12, 4, 21), AMS, utc(2026, 12, 5, 9)),
        # Saturday 18:30 CEST before the clocks go back: Sunday 10:00 is CET (09:00 UTC)
        (utc(2026, 10, 24, 16, 30), AMS, utc(2026, 10, 25, 9)),
        # Saturday 18:30 CET before the clocks go forward: Sunday 10:00 is CEST (08:00 UTC)
        (utc(2026, 3, 28, 17, 30), AMS, utc(2026, 3, 29, 8)),
        # Sunday 29 March 2026 01:30 UTC (03:30 CEST, just after the gap): until 10:00 CEST
        (utc(2026, 3, 29, 1, 30), AMS, utc(2026, 3, 29, 8)),
        # Monday 07:59 CEST after spring-forward: 08:00 CEST is 06:00 UTC
        (utc(2026, 3, 30, 5, 59), AMS, utc(2026, 3, 30, 6)),
        # the recipient's zone counts, not ours: 09:00 in Amsterdam is 03:00 in New York
        (utc(2026, 12, 1, 8), "America/New_York", utc(2026, 12, 1, 13)),
    ],
)
def test_quiet_hours_hold_until_the_recipients_window_opens_across_dst(now, zone, allowed):
    assert next_allowed(now, zone, DEFAULT) == allowed


def test_quiet_hours_switched_off_never_hold():
    night = utc(2026, 12, 1, 2)
    assert next_allowed(night, AMS, QuietHours(enabled=False)) == night


def test_a_country_with_one_zone_gives_it_and_one_with_many_gives_the_connections():
    assert zone_of_country("BE", AMS) == "Europe/Brussels"
    assert zone_of_country("US", AMS) == AMS


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("€" * 80, "GSM-7", 1),  # extension characters take two septets
        ("€" * 81, "GSM-7", 2),
        ("é" * 160, "GSM-7", 1),  # é is in the basic alphabet
        ("ç" + "a" * 69, "UCS-2", 1),  # one ç turns the whole text to UCS-2
        ("\u201cquoted\u201d" + "a" * 70, "UCS-2", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
    ],
)
def test_sms_encoding_and_segment_count(text, encoding, segments):
    assert sms_segments(text) == (encoding, segments)


DATA = {
    "name": "Jan",
    "company": "Bakkerij B.V.",
    "number": "26000001",
    "amount": Decimal("1210"),
    "currency": "EUR",
    "due_date": date(2026, 12, 14),
    "order_date": None,
    "delivery_date": None,
    "your_ref": None,
}


@pytest.mark.parametrize(
    ("language", "amount", "day"),
    [
        ("nl", "€ 1.210,00", "14-12-2026"),
        ("en", "€1,210.00", "14/12/2026"),
        ("de", "1.210,00 €", "14.12.2026"),
        ("fr", "1 210,00 €", "14/12/2026"),
    ],
)
def test_amounts_and_dates_are_formatted_for_the_language_in_plain_gsm7(language, amount, day):
    out = Texts().render("invoice_issued", language, **DATA)
    assert amount in out.text
    assert day in out.text
    assert out.encoding == "GSM-7"  # Babel's non-breaking spaces never reach the SMS
    assert out.subject.endswith("Bakkerij B.V.")
    assert out.email.startswith(out.text)


def test_a_missing_variable_fails_the_render_instead_of_leaving_a_blank():
    data = {k: v for k, v in DATA.items() if k != "company"}
    with pytest.raises(jinja2.UndefinedError):
        Texts().render("invoice_issued", "nl", **data)


def test_an_unsupported_language_renders_english():
    assert Texts().render("invoice_issued", "es", **DATA).text.startswith("Dear Jan, invoice")


@pytest.mark.parametrize("language", ["nl", "en", "de", "fr"])
def test_rendering_one_channels_parts_gives_the_same_blocks_as_rendering_all(language):
    whole = Texts().render("invoice_issued", language, **DATA)
    sms = Texts().render("invoice_issued", language, "text", **DATA)
    email = Texts().render("invoice_issued", language, "email", **DATA)

    assert (sms.text, sms.encoding, sms.segments) == (whole.text, whole.encoding, whole.segments)
    assert sms.segments >= 1
    assert (sms.subject, sms.email) == ("", "")
    assert (email.subject, email.email) == (whole.subject, whole.email)
    assert email.email
    assert email.text == ""
