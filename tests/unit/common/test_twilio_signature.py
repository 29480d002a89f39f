"""X-Twilio-Signature: common.signatures against the published vectors and as a property.

The vectors are twilio-python's own (tests/vectors/twilio-signature.json, provenance in
tests/vectors/README.md); the twilio SDK's RequestValidator is a second, independent oracle.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from common.signatures import twilio_signature, twilio_verify

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "twilio-signature.json").read_text(encoding="utf-8")
)
TOKEN: str = VECTORS["auth_token"]


def _pairs(vector: dict[str, Any]) -> list[tuple[str, str]]:
    if "params" in vector:
        return list(vector["params"].items())
    if "params_pairs" in vector:
        return [(name, value) for name, value in vector["params_pairs"]]
    if "params_form_encoded" in vector:
        return parse_qsl(vector["params_form_encoded"], keep_blank_values=True)
    return []


def _by_operation(operation: str) -> list[Any]:
    return [pytest.param(v, id=v["id"]) for v in VECTORS["vectors"] if v["operation"] == operation]


DERIVED = VECTORS["derived_vectors"]["items"]


@pytest.mark.parametrize("vector", _by_operation("compute_signature"))
def test_signature_matches_the_published_vector(vector: dict[str, Any]) -> None:
    assert twilio_signature(TOKEN, vector["url"], _pairs(vector)) == vector["expected_signature"]


@pytest.mark.parametrize("vector", _by_operation("compute_hash"))
def test_body_hash_matches_the_published_vector(vector: dict[str, Any]) -> None:
    digest = hashlib.sha256(vector["body"].encode()).hexdigest()
    assert digest == vector["expected_sha256_hex"]


@pytest.mark.parametrize("vector", _by_operation("validate"))
def test_validation_agrees_with_the_published_vector(vector: dict[str, Any]) -> None:
    body = vector["body"].encode() if "body" in vector else None
    valid = twilio_verify(TOKEN, vector["url"], _pairs(vector), vector["signature"], body=body)
    assert valid is vector["expected_valid"]


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["id"]) for v in DERIVED if "expected_signature" in v]
)
def test_signature_matches_the_derived_vector(vector: dict[str, Any]) -> None:
    assert twilio_signature(TOKEN, vector["url"], _pairs(vector)) == vector["expected_signature"]


@pytest.mark.parametrize(
    "vector", [pytest.param(v, id=v["id"]) for v in DERIVED if v.get("operation") == "validate"]
)
def test_derived_negative_vector_is_rejected(vector: dict[str, Any]) -> None:
    token = vector.get("auth_token", TOKEN)
    body = vector["body"].encode() if "body" in vector else None
    valid = twilio_verify(token, vector["url"], _pairs(vector), vector["signature"], body=body)
    assert valid is vector["expected_valid"] is False


def _flip(signature: str) -> str:
    """The same signature with one bit of its digest changed."""
    digest = bytearray(base64.b64decode(signature))
    digest[0] ^= 1
    return base64.b64encode(bytes(digest)).decode()


@pytest.mark.parametrize(
    "vector", [v for v in _by_operation("validate") if v.values[0]["expected_valid"]]
)
def test_a_valid_vector_fails_with_one_bit_of_the_signature_changed(
    vector: dict[str, Any],
) -> None:
    body = vector["body"].encode() if "body" in vector else None
    signature = _flip(vector["signature"])
    assert not twilio_verify(TOKEN, vector["url"], _pairs(vector), signature, body=body)


@pytest.mark.parametrize("vector", [v for v in _by_operation("validate") if "body" in v.values[0]])
def test_a_json_vector_fails_when_the_body_hash_is_missing_from_the_url(
    vector: dict[str, Any],
) -> None:
    url = vector["url"].split("&bodySHA256=")[0]
    assert not twilio_verify(TOKEN, url, [], vector["signature"], body=vector["body"].encode())


def test_an_empty_signature_is_rejected() -> None:
    vector = VECTORS["vectors"][0]
    assert not twilio_verify(TOKEN, vector["url"], _pairs(vector), "")


# --- properties -------------------------------------------------------------------------------

NAMES = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_",
    min_size=1,
    max_size=12,
)
VALUES = st.text(max_size=40)
PARAMS = st.dictionaries(NAMES, VALUES, max_size=8)
HOSTS = st.from_regex(r"[a-z][a-z0-9-]{0,10}\.(com|nl|io)", fullmatch=True)
PATHS = st.from_regex(r"(/[A-Za-z0-9_.-]{1,10}){0,3}", fullmatch=True)
QUERIES = st.from_regex(
    r"(\?[a-z]{1,5}=[A-Za-z0-9]{1,5}(&[a-z]{1,5}=[A-Za-z0-9]{0,5}){0,2})?", fullmatch=True
)
URLS = st.builds(
    lambda scheme, host, port, path, query: f"{scheme}://{host}{port}{path}{query}",
    st.sampled_from(["http", "https"]),
    HOSTS,
    st.sampled_from(["", ":8443", ":1234"]),
    PATHS,
    QUERIES,
)
TOKENS = st.text(min_size=1, max_size=40)


@given(token=TOKENS, url=URLS, params=PARAMS)
def test_a_signature_round_trips_and_matches_the_sdk(
    token: str, url: str, params: dict[str, str]
) -> None:
    signature = twilio_signature(token, url, params.items())
    assert twilio_verify(token, url, params.items(), signature)
    assert signature == RequestValidator(token).compute_signature(url, params)
    assert RequestValidator(token).validate(url, params, signature)


@given(token=TOKENS, url=URLS, params=PARAMS.filter(bool), data=st.data())
def test_changing_any_parameter_value_breaks_the_signature(
    token: str, url: str, params: dict[str, str], data: st.DataObject
) -> None:
    signature = twilio_signature(token, url, params.items())
    name = data.draw(st.sampled_from(sorted(params)))
    value = data.draw(VALUES.filter(lambda v: v != params[name]))
    tampered = {**params, name: value}
    assert not twilio_verify(token, url, tampered.items(), signature)


@given(token=TOKENS, url=URLS, params=PARAMS.filter(bool), data=st.data())
def test_renaming_any_parameter_breaks_the_signature(
    token: str, url: str, params: dict[str, str], data: st.DataObject
) -> None:
    signature = twilio_signature(token, url, params.items())
    name = data.draw(st.sampled_from(sorted(params)))
    # Lengthening the name lengthens the signed string, so the two can never coincide.
    suffix = data.draw(NAMES)
    tampered = [(n + suffix if n == name else n, v) for n, v in params.items()]
    assert not twilio_verify(token, url, tampered, signature)


@given(token=TOKENS, url=URLS, params=PARAMS, data=st.data())
def test_adding_or_dropping_a_parameter_breaks_the_signature(
    token: str, url: str, params: dict[str, str], data: st.DataObject
) -> None:
    signature = twilio_signature(token, url, params.items())
    extra = data.draw(NAMES.filter(lambda n: n not in params))
    assert not twilio_verify(token, url, [*params.items(), (extra, "")], signature)
    if params:
        dropped = data.draw(st.sampled_from(sorted(params)))
        rest = [(n, v) for n, v in params.items() if n != dropped]
        assert not twilio_verify(token, url, rest, signature)


@given(token=TOKENS, url=URLS, params=PARAMS, data=st.data())
def test_changing_the_url_breaks_the_signature(
    token: str, url: str, params: dict[str, str], data: st.DataObject
) -> None:
    signature = twilio_signature(token, url, params.items())
    other = data.draw(
        st.one_of(
            st.just(urlunsplit(urlsplit(url)._replace(path="/x" + urlsplit(url).path))),
            st.just(url.replace("://", "://x", 1)),
            st.just(("https" + url[4:]) if url.startswith("http:") else ("http" + url[5:])),
            URLS.filter(lambda u: u != url),
        )
    )
    # Only the same URL up to its port may still match (the SDK's own quirk).
    assert not twilio_verify(token, other, params.items(), signature) or _same_but_port(url, other)


@given(token=TOKENS, url=URLS, params=PARAMS, other=TOKENS)
def test_another_token_breaks_the_signature(
    token: str, url: str, params: dict[str, str], other: str
) -> None:
    signature = twilio_signature(token, url, params.items())
    assert other == token or not twilio_verify(other, url, params.items(), signature)


def _same_but_port(a: str, b: str) -> bool:
    """A signature of ``a`` validates ``b`` also when ``a`` is ``b`` without its port (any
    port: the SDK's RequestValidator strips it) or with its scheme's default port."""
    netloc = re.match(r"^[a-z]+://([^/?#]*)", b)
    assert netloc is not None
    host = netloc.group(1)
    bare = re.sub(r":\d+$", "", host)
    default = ":443" if b.startswith("https:") else ":80"
    with_default = host if bare != host else host + default
    return a in (b.replace(host, bare, 1), b.replace(host, with_default, 1))


def test_a_url_with_an_upper_case_host_validates_as_in_the_sdk() -> None:
    url = "https://Hooks.Example.com/webhooks/twilio/status"
    params = [("MessageSid", "SM" + "0" * 32), ("MessageStatus", "delivered")]
    signature = twilio_signature(TOKEN, url, params)
    assert RequestValidator(TOKEN).validate(url, dict(params), signature)
    assert twilio_verify(TOKEN, url, params, signature)


def test_a_signature_of_the_url_without_its_port_validates_any_port_as_in_the_sdk() -> None:
    signature = twilio_signature("token", "https://a.com/status", [])
    assert RequestValidator("token").validate("https://a.com:8443/status", {}, signature)
    assert twilio_verify("token", "https://a.com:8443/status", [], signature)
