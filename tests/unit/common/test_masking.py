"""No phone number, email address, token or secret reaches a log line in clear."""

from __future__ import annotations

import json
import string

import structlog
from hypothesis import given
from hypothesis import strategies as st

from common.logging import configure_logging, mask_error, mask_text


def test_log_lines_are_masked_before_rendering(capsys):
    configure_logging("test", json=True)
    log = structlog.get_logger("test")
    log.info(
        "notification_sent",
        to="+31 6 12345678",
        email="anna@bakkerij.nl",
        access_token="eyJsecret",
        note="call +31612345678 or mail piet@example.com",
        headers={"Authorization": "Bearer abc.def"},
    )
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    text = json.dumps(line)
    for leaked in ("12345678", "anna@", "piet@", "eyJsecret", "abc.def"):
        assert leaked not in text
    assert line["to"].endswith("78")
    assert line["access_token"] == "***"
    assert line["service"] == "test"
    structlog.reset_defaults()


@given(
    st.text(alphabet=string.digits, min_size=8, max_size=15), st.sampled_from(["", " ", "-", "."])
)
def test_masking_leaves_no_number_behind(digits, sep):
    number = "+" + sep.join(digits[i : i + 3] for i in range(0, len(digits), 3))
    masked = mask_text(f"to {number} now")
    assert digits[:-2] not in masked.replace(sep, "")


@given(st.from_regex(r"[a-z]{2,10}@[a-z]{2,10}\.(nl|com|org)", fullmatch=True))
def test_masking_hides_the_local_part_of_emails(email):
    local, domain = email.split("@")
    assert mask_text(email) == f"{local[0]}***@{domain}"


def test_a_vendor_error_quoting_a_number_without_plus_shows_it_masked_like_a_recipient():
    error = "21211: The 'To' number 31612345678 is not a valid phone number."
    assert mask_error(error) == "21211: The 'To' number *********78 is not a valid phone number."
    assert mask_error("'To' number +31 6 12345678 is not a valid mobile number") == (
        "'To' number +*********78 is not a valid mobile number"
    )


def test_a_vendor_error_keeps_its_codes_sids_links_and_times():
    error = (
        "30003 for SM0123456789abcdef0123456789abcdef at 2024-01-05T10:00:00Z, "
        "see https://www.twilio.com/docs/errors/30003"
    )
    assert mask_error(error) == error


@given(st.from_regex(r"\A[0-9]{7,15}\Z"), st.sampled_from(["", " ", "(", "number "]))
def test_no_bare_number_survives_in_a_vendor_error(number: str, before: str):
    masked = mask_error(f"The 'To' number {before}{number} is not valid")
    assert number not in masked
    assert masked.count("*") == len(number) - 2


@given(
    st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR"]),
    st.from_regex(r"[A-Za-z0-9._-]{6,40}", fullmatch=True),
)
def test_a_bearer_token_in_free_text_is_masked_whatever_the_case_of_the_word(word, token):
    assert mask_text(f"upstream said: {word} {token} was refused") == (
        f"upstream said: {word} *** was refused"
    )
