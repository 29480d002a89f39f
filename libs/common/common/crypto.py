"""Sealing secrets at rest with ``cryptography``'s MultiFernet.

``MLC_SECRET_KEY`` holds one or more Fernet keys separated by commas, newest first: the newest
seals, every listed key opens, and ``rotate`` re-seals a value under the newest key. Rotating the
key is: prepend a new key, run the re-encrypt command, then drop the old key.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

__all__ = ["InvalidToken", "Sealer", "generate_key"]


def generate_key() -> str:
    """A new random key in the ``MLC_SECRET_KEY`` format."""
    return Fernet.generate_key().decode()


class Sealer:
    """Seal and open short secrets (tokens, client secrets, webhook secrets)."""

    def __init__(self, keys: SecretStr | str) -> None:
        raw = keys.get_secret_value() if isinstance(keys, SecretStr) else keys
        parts = [k.strip() for k in raw.split(",") if k.strip()]
        if not parts:
            raise ValueError("MLC_SECRET_KEY holds no key")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])

    def seal(self, secret: str) -> bytes:
        return self._fernet.encrypt(secret.encode())

    def open(self, sealed: bytes) -> str:
        """The clear value; raises ``InvalidToken`` if no configured key opens it."""
        return self._fernet.decrypt(sealed).decode()

    def rotate(self, sealed: bytes) -> bytes:
        """Re-seal under the newest key (the old key may then be removed)."""
        return self._fernet.rotate(sealed)
