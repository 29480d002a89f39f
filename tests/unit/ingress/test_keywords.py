"""Which inbound SMS bodies are opt-out, opt-in and help keywords (and which are not)."""

from __future__ import annotations

import pytest

from ingress.keywords import classify


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", ("stop", "STOP")),
        ("stop", ("stop", "STOP")),
        ("  Stop.  ", ("stop", "STOP")),
        ("Unsubscribe", ("stop", "UNSUBSCRIBE")),
        ("afmelden", ("stop", "AFMELDEN")),
        ("Arrêt", ("stop", "ARRET")),
        ("ABMELDEN!", ("stop", "ABMELDEN")),
        ("START", ("start", "START")),
        ("unstop", ("start", "UNSTOP")),
        ("help", ("help", "HELP")),
        ("INFO", ("help", "INFO")),
    ],
)
def test_a_message_that_is_exactly_a_keyword_is_classified_by_it(body, expected):
    assert classify(body) == expected


@pytest.mark.parametrize("body", ["STOP please", "please stop", "stopped", "", "Bedankt!"])
def test_a_keyword_inside_a_longer_message_is_not_an_opt_out(body):
    assert classify(body) == ("message", None)


def test_twilios_opt_out_type_wins_over_the_body():
    assert classify("Nee dank je", opt_out_type="STOP") == ("stop", "STOP")
    assert classify("STOP", opt_out_type="START") == ("start", "START")
