"""SendGrid's Signed Event Webhook, checked against sendgrid-python's published vector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.signatures import sendgrid_verify

VECTOR = json.loads(
    (Path(__file__).parents[2] / "vectors" / "sendgrid-event-webhook.json").read_text()
)
VALID = VECTOR["valid"]


def test_the_published_signed_event_post_verifies():
    assert sendgrid_verify(
        VECTOR["public_key_b64_der"],
        VALID["payload"].encode(),
        VALID["signature"],
        VALID["timestamp"],
    )


@pytest.mark.parametrize("case", VECTOR["negative_cases"], ids=lambda c: c["id"])
def test_each_published_negative_case_is_refused(case):
    assert case["expected_valid"] is False
    assert not sendgrid_verify(
        case.get("public_key_b64_der", VECTOR["public_key_b64_der"]),
        case.get("payload", VALID["payload"]).encode(),
        case.get("signature", VALID["signature"]),
        case.get("timestamp", VALID["timestamp"]),
    )


def test_the_trailing_crlf_is_part_of_what_is_signed():
    stripped = VALID["payload"].rstrip("\r\n").encode()
    assert not sendgrid_verify(
        VECTOR["public_key_b64_der"], stripped, VALID["signature"], VALID["timestamp"]
    )


@pytest.mark.parametrize("garbage", ["", "not-base64!", "QUJD"])
def test_garbage_keys_or_signatures_are_refused_not_raised(garbage):
    assert not sendgrid_verify(garbage, b"[]", VALID["signature"], VALID["timestamp"])
    assert not sendgrid_verify(VECTOR["public_key_b64_der"], b"[]", garbage, "1")
