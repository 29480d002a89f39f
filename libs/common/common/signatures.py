"""Pure signature verifiers for the three vendors' callbacks. No I/O, no logging.

- Exact Online ``HashCode``: upper-case hex HMAC-SHA256, keyed with the app's webhook secret,
  over the raw bytes of the ``Content`` object exactly as they appear in the body.
- ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the auth token, over the full URL followed
  by each form parameter name and value in sorted order; JSON bodies are bound through a
  ``bodySHA256`` query parameter instead. The URL is tried with and without the default port.
- SendGrid Signed Event Webhook: ECDSA P-256 / SHA-256 over ``timestamp + raw body``.

Every HMAC is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

__all__ = [
    "exact_hashcode",
    "sendgrid_verify",
    "split_exact_body",
    "twilio_signature",
    "twilio_verify",
    "verify_exact",
]

# Exact's body is {"Content":<object>,"HashCode":"<hex>"}; the greedy group keeps any
# "HashCode" text inside Content part of the signed bytes, as picqer's client does.
_EXACT_BODY = re.compile(rb'\A\{"Content":(.*),"HashCode":"([^"]*)"\}\s*\Z', re.DOTALL)


def exact_hashcode(secret: str, content: bytes) -> str:
    """The HashCode Exact puts beside ``content`` (the raw Content bytes)."""
    return hmac.new(secret.encode(), content, hashlib.sha256).hexdigest().upper()


def split_exact_body(body: bytes) -> tuple[bytes, str] | None:
    """Return (raw Content bytes, HashCode) or None if the body is not in Exact's envelope."""
    match = _EXACT_BODY.match(body)
    if match is None:
        return None
    return match.group(1), match.group(2).decode("ascii", errors="replace")


def verify_exact(body: bytes, secret: str) -> bool:
    """True when ``body`` carries a HashCode that ``secret`` produced over its Content bytes."""
    parts = split_exact_body(body)
    if parts is None:
        return False
    content, given = parts
    return hmac.compare_digest(exact_hashcode(secret, content).encode(), given.encode())


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]] = ()) -> str:
    """Compute X-Twilio-Signature for a form post (or, with no params, for a JSON post)."""
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    payload = url + "".join(
        name + value for name in sorted(grouped) for value in sorted(grouped[name])
    )
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _port_variants(url: str) -> tuple[str, str]:
    """The URL without its port and with the scheme's default port (Twilio signs either).

    The host keeps its case as received: Twilio signs the URL as configured.
    """
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    host = hostport.rsplit(":", 1)[0] if parts.port else hostport
    prefix = userinfo + "@" if userinfo else ""
    default = 443 if parts.scheme == "https" else 80
    without = urlunsplit(parts._replace(netloc=prefix + host))
    with_port = (
        url if parts.port else urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))
    )
    return without, with_port


def twilio_verify(
    auth_token: str,
    url: str,
    params: Iterable[tuple[str, str]],
    signature: str,
    *,
    body: bytes | None = None,
) -> bool:
    """Validate a Twilio callback as the SDK's RequestValidator does.

    ``params`` are the form fields (repeated names allowed). For a JSON callback pass the raw
    ``body``: it must hash to the URL's ``bodySHA256`` and the signature covers the URL alone.
    """
    pairs: list[tuple[str, str]] = list(params)
    if body is not None:
        query = dict(parse_qsl(urlsplit(url).query))
        expected = query.get("bodySHA256")
        if expected is None:
            return False
        if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), expected):
            return False
        pairs = []
    if not signature:
        return False
    given = signature.encode()
    if hmac.compare_digest(twilio_signature(auth_token, url, pairs).encode(), given):
        return True  # signed as received: the usual case, one HMAC
    return any(
        hmac.compare_digest(twilio_signature(auth_token, candidate, pairs).encode(), given)
        for candidate in _port_variants(url)
        if candidate != url
    )


def sendgrid_verify(
    public_key_b64_der: str, payload: bytes, signature_b64: str, timestamp: str
) -> bool:
    """Verify a SendGrid Signed Event Webhook post over ``timestamp + payload``."""
    try:
        key = load_der_public_key(base64.b64decode(public_key_b64_der))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        key.verify(
            base64.b64decode(signature_b64), timestamp.encode() + payload, ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError):
        return False
    return True
