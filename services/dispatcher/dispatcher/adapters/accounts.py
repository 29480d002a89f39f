"""Which accounts send a connection's notifications, and as whom.

A company may bring its own Twilio and SendGrid accounts and senders (set with ``mlc
connections set-channels`` / ``set-senders``; token-keeper keeps the secrets sealed); what it
does not bring comes from the install's ``MLC_TWILIO_*`` / ``MLC_SENDGRID_*`` / ``MLC_EMAIL_*``
settings. Status callbacks of an own Twilio account name the connection in their URL, so
ingress checks them with that account's auth token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from common.contracts import ChannelCredentials
from common.settings import ServiceSettings

__all__ = [
    "CredentialsLookup",
    "EmailAccount",
    "EmailAccounts",
    "TwilioAccount",
    "TwilioAccounts",
    "with_connection",
]


class CredentialsLookup(Protocol):
    """A connection's own channel credentials (``common.rpc.CachedLookup`` in production)."""

    async def get(self, connection_id: str) -> ChannelCredentials: ...


@dataclass(frozen=True)
class TwilioAccount:
    account_sid: str
    auth: tuple[str, str]
    messaging_service_sid: str
    status_callback: str
    #: The caller id of calls, and where call progress and answering-machine results go.
    voice_from: str = ""
    voice_callback: str = ""


def with_connection(url: str, connection_id: str | None) -> str:
    """``url?connection=<id>``, the id percent-encoded: an id with ``&``, ``#``, ``+`` or a
    space would otherwise change the URL Twilio calls, and the one it signs."""
    if connection_id is None:
        return url
    return f"{url}?connection={quote(connection_id, safe='')}"


class TwilioAccounts:
    def __init__(self, settings: ServiceSettings, credentials: CredentialsLookup) -> None:
        base = settings.public_base_url.rstrip("/")
        self._callback = base + "/webhooks/twilio/status"
        self._voice_callback = base + "/webhooks/twilio/voice-status"
        self._default = TwilioAccount(
            settings.twilio_account_sid,
            settings.twilio_credentials(),
            settings.twilio_messaging_service_sid,
            self._callback,
            settings.twilio_voice_from,
            self._voice_callback,
        )
        self._credentials = credentials

    async def for_connection(self, connection_id: str) -> TwilioAccount:
        """Raises TransientError when token-keeper cannot say (the send waits and retries:
        guessing the default account could send from the wrong company)."""
        own = await self._credentials.get(connection_id)
        voice_from = own.twilio_voice_from or self._default.voice_from
        if not (own.has_twilio and own.twilio_account_sid and own.twilio_auth_token):
            if voice_from == self._default.voice_from:
                return self._default
            return TwilioAccount(**{**self._default.__dict__, "voice_from": voice_from})
        sid = own.twilio_account_sid
        return TwilioAccount(
            sid,
            (sid, own.twilio_auth_token.get_secret_value()),
            own.twilio_messaging_service_sid or self._default.messaging_service_sid,
            with_connection(self._callback, connection_id),
            voice_from,
            with_connection(self._voice_callback, connection_id),
        )


@dataclass(frozen=True)
class EmailAccount:
    api_key: str
    from_email: str
    from_name: str | None
    reply_to: str | None


class EmailAccounts:
    def __init__(self, settings: ServiceSettings, credentials: CredentialsLookup) -> None:
        self._default = EmailAccount(
            settings.sendgrid_api_key.get_secret_value(),
            settings.email_from,
            settings.email_from_name,
            settings.email_reply_to,
        )
        self._credentials = credentials

    async def for_connection(self, connection_id: str) -> EmailAccount:
        """The connection's SendGrid key and sender, each falling back to the install's.
        Raises TransientError when token-keeper cannot say."""
        own = await self._credentials.get(connection_id)
        key = own.sendgrid_api_key.get_secret_value() if own.sendgrid_api_key else None
        return EmailAccount(
            key or self._default.api_key,
            own.email_from or self._default.from_email,
            own.email_from_name or self._default.from_name,
            own.email_reply_to or self._default.reply_to,
        )
