"""The batch body (common.batches): members come back byte for byte; a broken body is invalid."""

from __future__ import annotations

import pytest

from common import batches
from common.contracts import NotificationSent
from common.errors import InvalidMessage


def _member(text: str, message_id: str | None = "m", correlation_id: str | None = "c"):
    body = (
        NotificationSent(
            notification_id="6b1d2c3e-4f50-4a61-8b72-9c8d7e6f5a40",
            attempt=1,
            provider_id="SM" + "0" * 32,
            provider_status=text,
        )
        .model_dump_json()
        .encode()
    )
    return batches.Member(body, message_id, correlation_id)


def test_members_come_back_with_their_own_bodies_and_ids_in_order():
    # A body holding an escaped newline, a quote and non-ASCII text still stays one line.
    members = [
        _member("line one\nline two", "id-1", "corr-1"),
        _member('say "hi" — café', "id-2", None),
        _member("", None, "corr-3"),
    ]
    decoded = batches.decode(batches.encode(members))
    assert decoded == members
    assert [NotificationSent.model_validate_json(m.body).provider_status for m in decoded] == [
        "line one\nline two",
        'say "hi" — café',
        "",
    ]


def test_a_body_with_a_raw_newline_cannot_be_put_in_a_batch():
    with pytest.raises(ValueError, match="one line"):
        batches.encode([batches.Member(b'{"a":\n1}', "m", None)])


@pytest.mark.parametrize(
    "body",
    [
        b"not json\n{}",
        b'{"ids": 1}\n{}',
        b'[["a", "b"]]',  # an id with no body
        b'[["a", "b"], ["c", "d"]]\n{}',  # more ids than bodies
        b'[["a", "b"]]\n{}\n{}',  # more bodies than ids
        b'[["a"]]\n{}',  # an id pair of one
        b'[[1, "b"]]\n{}',  # an id that is not a string
        b"[]",
    ],
)
def test_a_body_that_is_not_a_batch_is_an_invalid_message(body):
    with pytest.raises(InvalidMessage):
        batches.decode(body)


def test_bodies_are_a_plain_messages_own_or_its_batchs_members():
    members = [_member("a"), _member("b")]
    batch = batches.encode(members)
    assert batches.bodies(batch, {batches.BATCH_HEADER: 2}) == [m.body for m in members]
    assert batches.bodies(members[0].body, {"x-schema-version": 1}) == [members[0].body]
    assert batches.bodies(members[0].body, None) == [members[0].body]
