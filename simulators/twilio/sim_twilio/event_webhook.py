"""Signing SendGrid Event Webhook posts as SendGrid does: ECDSA P-256 / SHA-256 over
``timestamp + body``, base64 DER signature in ``X-Twilio-Email-Event-Webhook-Signature`` and the
timestamp in ``X-Twilio-Email-Event-Webhook-Timestamp``.

The key pair is the simulator's own and not a secret: it opens nothing but the simulator's
events. Its public half is ``SIMULATOR_DEFAULTS["sendgrid_webhook_public_key"]``, the default
verification key of ingress.
"""

from __future__ import annotations

import base64
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "sign", "signed_headers"]

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

_SIMULATOR_KEY = b"""-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgrG/dRzmO1Yu7RMDY
hK59pZX9vTVhA958HNRK+FhVl/ChRANCAARnlzbgDtRLrQNuSFvaRlD1K9aTNnWm
jvW4+xfe0DAggA+ULTsldsVh+UZ5cw/kmTltC1sCUZlvglite4645fuT
-----END PRIVATE KEY-----
"""


def sign(body: bytes, timestamp: str, key_pem: bytes = _SIMULATOR_KEY) -> str:
    """The base64 DER ECDSA signature of ``timestamp + body``."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("an EC private key is needed")
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def signed_headers(body: bytes, timestamp: str | None = None) -> dict[str, str]:
    """The two headers of a post of ``body``, signed now (or at ``timestamp``)."""
    when = timestamp or str(int(time.time()))
    return {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(body, when),
        TIMESTAMP_HEADER: when,
    }
