"""What the trail keeps of a person, and how (the auditor's data key, ``MLC_AUDITOR_DATA_KEY``).

A security review found recipients, message texts and whole provider forms in clear in the
audit schema. What is kept instead:

- a recipient as a keyed hash (HMAC-SHA256 of the normalised address, to find a person's
  notifications for erasure; worthless to whoever copies the table without the key, unlike a
  plain hash, which anyone can compute for every phone number) and a masked form (what an
  operator sees). The clear address is not kept at all: it cannot be revealed later.
- the message text (first name, invoice number, amount) sealed with Fernet, opened only for
  an authorised reveal (``/admin/trail?reveal=1``, ``mlc audit show --reveal``).
- provider forms without the fields that name, locate or quote a person, and without any
  value that looks like a phone number, an email address or a token.

The key holds one or more Fernet keys separated by commas, newest first, like
``MLC_SECRET_KEY``: the newest seals and hashes; every listed key opens, and looking an address
up tries the hash under each, so rows written before a rotation are still found (and erased)
while their key stays listed. The hash key is derived from each Fernet key, never the Fernet
key itself, so a hash can never help to forge a sealed text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping

from cryptography.fernet import Fernet
from pydantic import SecretStr

from common.contracts import normalise_address
from common.crypto import InvalidToken, Sealer
from common.logging import mask_text

__all__ = [
    "ERASED",
    "SETTING",
    "UNREADABLE",
    "PersonalData",
    "looks_personal",
    "parse_keys",
]

#: The variable that holds the key, named in every message about it.
SETTING = "MLC_AUDITOR_DATA_KEY"

#: What an erased recipient or text shows (``privacy.forget``).
ERASED = "[erased]"

#: What a text sealed under a key no longer listed shows (a rotation dropped its key).
UNREADABLE = "[sealed under a key no longer configured]"

#: Provider form fields that name, locate or quote a person (Twilio's To/From/Body/Caller/
#: Called, SendGrid's email/ip/useragent/url), compared lower-cased.
_PERSONAL_FIELDS = frozenset(
    {"to", "from", "body", "caller", "called", "email", "ip", "useragent", "url"}
)
#: ...and their companions: Twilio's ToCity, FromZip, CallerName, CalledCountry..., and the
#: media a person sent (MediaUrl0...).
_PERSONAL_PREFIX = re.compile(r"^(?:To|From|Caller|Called)[A-Z]|^MediaUrl\d")

#: What the hash key is derived for (a new purpose gets a new label, never the same key).
_HASH_LABEL = b"mlc-auditor recipient hash v1"


def parse_keys(raw: SecretStr | str) -> list[str]:
    """The listed Fernet keys, newest first; ValueError (naming the setting, never the key)
    when none is given or one is not a Fernet key."""
    text = raw.get_secret_value() if isinstance(raw, SecretStr) else raw
    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise ValueError(f"{SETTING} holds no key")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ValueError(
                f"{SETTING}: key {position} is not a Fernet key (32 url-safe base64 bytes)"
            ) from None
    return keys


def looks_personal(field: str, value: object) -> bool:
    """True for a provider form field to leave out of the trail: a field that names, locates
    or quotes a person, or a value that masking would change (a phone number, an email
    address, a bearer token), whatever its field is called."""
    if field.lower() in _PERSONAL_FIELDS or _PERSONAL_PREFIX.match(field):
        return True
    text = str(value)
    return mask_text(text) != text


def _hash_key(fernet_key: str) -> bytes:
    """The HMAC key derived from one Fernet key (both halves of it: signing and encryption)."""
    material = base64.urlsafe_b64decode(fernet_key.encode())
    return hmac.new(material, _HASH_LABEL, hashlib.sha256).digest()


class PersonalData:
    """Hashes, masks, seals and strips what the trail keeps of a person."""

    def __init__(self, keys: SecretStr | str) -> None:
        listed = parse_keys(keys)
        self._sealer = Sealer(",".join(listed))
        self._hash_keys = [_hash_key(k) for k in listed]

    def hashes(self, address: str) -> list[str]:
        """The address's hash under every listed key, newest first: what a lookup matches."""
        value = normalise_address(address).encode()
        return [hmac.new(k, value, hashlib.sha256).hexdigest() for k in self._hash_keys]

    def hash(self, address: str) -> str:
        """The hash stored for a new row (newest key)."""
        return self.hashes(address)[0]

    @staticmethod
    def mask(address: str) -> str:
        """The address as an operator sees it: ``+*********78``, ``f***@example.com``. An
        address masking does not recognise (a number without ``+``) keeps only its last two
        characters, so no form of address is ever kept whole."""
        masked = mask_text(address)
        if masked != address or len(address) <= 2:
            return masked
        return "*" * (len(address) - 2) + address[-2:]

    def seal(self, text: str) -> bytes:
        return self._sealer.seal(text)

    def open(self, sealed: bytes | None) -> str | None:
        """The clear text; UNREADABLE when no listed key opens it (the key was dropped)."""
        if sealed is None:
            return None
        try:
            return self._sealer.open(bytes(sealed))
        except InvalidToken:
            return UNREADABLE

    @staticmethod
    def strip(raw: Mapping[str, object]) -> dict[str, str]:
        """A provider form without its personal fields and values (see :func:`looks_personal`):
        what ``status_events.raw`` keeps."""
        return {str(k): str(v) for k, v in raw.items() if not looks_personal(str(k), v)}
