"""Exact HashCode: common.signatures against the project's vectors and as a property.

The vectors (tests/vectors/exact-webhook.json, provenance in tests/vectors/README.md) were
computed from the documented rule; each valid one is also re-checked here with an independent
slice of the raw body, as picqer's client does it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.signatures import exact_hashcode, verify_exact

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "exact-webhook.json").read_text(encoding="utf-8")
)
SECRET: str = VECTORS["webhook_secret"]
PICQER_SLICE = re.compile(rb'^{"Content":(.*),"HashCode":"(.*)"}$', re.DOTALL)


def _vectors(*expected: str) -> list[Any]:
    return [pytest.param(v, id=v["id"]) for v in VECTORS["vectors"] if v["expected"] in expected]


@pytest.mark.parametrize("vector", _vectors("valid"))
def test_valid_vectors_verify(vector: dict[str, Any]) -> None:
    assert verify_exact(vector["body"].encode(), SECRET) is True


@pytest.mark.parametrize("vector", _vectors("invalid"))
def test_invalid_vectors_are_refused(vector: dict[str, Any]) -> None:
    assert verify_exact(vector["body"].encode(), SECRET) is False


@pytest.mark.parametrize("vector", _vectors("valid"))
def test_valid_vectors_agree_with_an_independent_slice(vector: dict[str, Any]) -> None:
    match = PICQER_SLICE.match(vector["body"].encode())
    assert match is not None
    digest = hmac.new(SECRET.encode(), match.group(1), hashlib.sha256).hexdigest().upper()
    assert digest == match.group(2).decode()
    assert exact_hashcode(SECRET, match.group(1)) == digest


@pytest.mark.parametrize("vector", _vectors("validation", "malformed"))
def test_bodies_without_the_envelope_never_verify(vector: dict[str, Any]) -> None:
    assert verify_exact(vector["body"].encode(), SECRET) is False


_json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
_content = st.dictionaries(
    st.text(min_size=1, max_size=12),
    st.recursive(
        _json_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=6,
    ),
    max_size=6,
)
_secrets = st.text(min_size=1, max_size=40)


def _signed(content: bytes, secret: str) -> bytes:
    hashcode = exact_hashcode(secret, content)
    return b'{"Content":' + content + b',"HashCode":"' + hashcode.encode() + b'"}'


@given(content=_content, secret=_secrets, compact=st.booleans())
def test_signing_round_trips(content: dict[str, Any], secret: str, compact: bool) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    raw = json.dumps(content, separators=separators, ensure_ascii=False).encode()
    assert verify_exact(_signed(raw, secret), secret) is True


@given(content=_content, secret=_secrets, data=st.data())
def test_changing_any_byte_of_the_content_breaks_the_signature(
    content: dict[str, Any], secret: str, data: st.DataObject
) -> None:
    raw = json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode()
    body = bytearray(_signed(raw, secret))
    start = len(b'{"Content":')
    index = data.draw(st.integers(min_value=start, max_value=start + len(raw) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != body[index]))
    body[index] = replacement
    assert verify_exact(bytes(body), secret) is False
