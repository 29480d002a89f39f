"""TwilioAccounts: which Twilio account sends a connection's notifications.

A company may bring its own account (set with ``mlc connections set-channels``; token-keeper
keeps it sealed); otherwise the install's ``MLC_TWILIO_*`` account sends. Status callbacks of
an own account name the connection in their URL, so ingress checks them with that account's
auth token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from common.contracts import ChannelCredentials
from common.settings import ServiceSettings

__all__ = ["CredentialsLookup", "TwilioAccount", "TwilioAccounts"]


class CredentialsLookup(Protocol):
    """A connection's own channel credentials (``common.rpc.CachedLookup`` in production)."""

    async def get(self, connection_id: str) -> ChannelCredentials: ...


@dataclass(frozen=True)
class TwilioAccount:
    account_sid: str
    auth: tuple[str, str]
    messaging_service_sid: str
    status_callback: str


class TwilioAccounts:
    def __init__(self, settings: ServiceSettings, credentials: CredentialsLookup) -> None:
        self._callback = settings.public_base_url.rstrip("/") + "/webhooks/twilio/status"
        self._default = TwilioAccount(
            settings.twilio_account_sid,
            settings.twilio_credentials(),
            settings.twilio_messaging_service_sid,
            self._callback,
        )
        self._credentials = credentials

    async def for_connection(self, connection_id: str) -> TwilioAccount:
        """Raises TransientError when token-keeper cannot say (the send waits and retries:
        guessing the default account could send from the wrong company)."""
        own = await self._credentials.get(connection_id)
        if not (own.has_twilio and own.twilio_account_sid and own.twilio_auth_token):
            return self._default
        sid = own.twilio_account_sid
        return TwilioAccount(
            sid,
            (sid, own.twilio_auth_token.get_secret_value()),
            own.twilio_messaging_service_sid or self._default.messaging_service_sid,
            f"{self._callback}?connection={connection_id}",
        )
