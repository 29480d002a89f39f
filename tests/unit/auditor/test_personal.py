"""What the trail keeps of a person: keyed hashes that survive a key rotation, masks that never
keep an address whole, sealed texts, provider forms without personal fields; and the one line
the auditor says when its data key is missing or wrong."""

from __future__ import annotations

import pytest

from auditor.personal import UNREADABLE, PersonalData, parse_keys
from auditor.settings import load
from common.contracts import address_key
from common.crypto import generate_key

TWILIO_FORM = {
    "MessageSid": "SM" + "1" * 32,
    "MessageStatus": "delivered",
    "AccountSid": "AC" + "2" * 32,
    "To": "+31612345678",
    "From": "+3197010000000",
    "Body": "Beste Anouk, factuur F123: 121,00",
    "ToCity": "Utrecht",
    "CallerName": "Anouk de Vries",
    "ForwardedFrom": "+31611112222",
    "ErrorCode": "30003",
}


def test_a_hash_is_keyed_stable_across_formatting_and_not_the_public_address_key():
    data = PersonalData(generate_key())
    assert data.hash("+31 6 1234 5678") == data.hash("+31612345678")
    assert data.hash("Finance@Example.com") == data.hash("finance@example.com")
    assert data.hash("+31612345678") != address_key("+31612345678")  # not enumerable
    assert data.hash("+31612345678") != PersonalData(generate_key()).hash("+31612345678")


def test_after_a_rotation_the_old_keys_hash_is_still_among_the_lookups():
    old, new = generate_key(), generate_key()
    before = PersonalData(old).hash("+31612345678")
    rotated = PersonalData(f"{new},{old}")
    assert rotated.hash("+31612345678") != before  # new rows: the newest key
    assert before in rotated.hashes("+31612345678")  # old rows still found


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("+31612345678", "+*********78"),
        ("finance@example.com", "f***@example.com"),
        ("0612345678", "********78"),  # no "+": masking does not see a number; still masked
    ],
)
def test_a_masked_address_keeps_at_most_its_last_two_characters(address: str, masked: str):
    assert PersonalData.mask(address) == masked


def test_a_sealed_text_opens_with_its_key_and_reads_unreadable_once_the_key_is_gone():
    key = generate_key()
    sealed = PersonalData(key).seal("Beste Anouk, factuur F123")
    assert b"Anouk" not in sealed
    assert PersonalData(f"{generate_key()},{key}").open(sealed) == "Beste Anouk, factuur F123"
    assert PersonalData(generate_key()).open(sealed) == UNREADABLE


def test_a_stripped_form_keeps_the_status_fields_and_nothing_that_names_a_person():
    stripped = PersonalData.strip(TWILIO_FORM)
    assert stripped == {
        "MessageSid": TWILIO_FORM["MessageSid"],
        "MessageStatus": "delivered",
        "AccountSid": TWILIO_FORM["AccountSid"],
        "ErrorCode": "30003",
    }


def test_a_stripped_sendgrid_event_loses_email_ip_useragent_url_and_any_address_value():
    event = {
        "event": "click",
        "email": "finance@example.com",
        "ip": "192.0.2.1",
        "useragent": "Mozilla/5.0",
        "url": "https://pay.example/F123",
        "reason": "550 mailbox <finance@example.com> unknown",
        "sg_event_id": "ev-1",
    }
    assert PersonalData.strip(event) == {"event": "click", "sg_event_id": "ev-1"}


def test_no_key_or_a_malformed_key_is_refused_without_echoing_the_key():
    with pytest.raises(ValueError, match="MLC_AUDITOR_DATA_KEY holds no key"):
        parse_keys(" , ")
    with pytest.raises(ValueError, match="key 2 is not a Fernet key") as refused:
        parse_keys(f"{generate_key()},not-a-key-at-all")
    assert "not-a-key-at-all" not in str(refused.value)


def test_loading_settings_without_a_data_key_exits_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv("MLC_AUDITOR_DATA_KEY", raising=False)
    with pytest.raises(SystemExit) as stopped:
        load()
    message = str(stopped.value.code)
    assert message.startswith("mlc-auditor: cannot start: MLC_AUDITOR_DATA_KEY is not set")
    assert "\n" not in message


def test_loading_settings_with_a_malformed_data_key_names_the_setting_not_the_value(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("MLC_AUDITOR_DATA_KEY", "hunter2-not-fernet")
    with pytest.raises(SystemExit) as stopped:
        load()
    message = str(stopped.value.code)
    assert "MLC_AUDITOR_DATA_KEY: key 1 is not a Fernet key" in message
    assert "hunter2" not in message
    assert "\n" not in message
