"""RPC requests to token-keeper and its replies (routing keys on ``mlc.rpc``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import BaseModel, PlainSerializer, SecretStr

from common.contracts.base import Message

__all__ = [
    "AccessToken",
    "ActiveConnection",
    "ChannelCredentials",
    "ChannelCredentialsGet",
    "Connections",
    "ConnectionsList",
    "RpcError",
    "TokenGet",
    "TokenRefresh",
    "WebhookSecret",
    "WebhookSecretGet",
]


#: A secret that only the wire form carries in clear; repr and logs show it masked.
WireSecret = Annotated[
    SecretStr, PlainSerializer(lambda value: value.get_secret_value(), when_used="json")
]


class _Rpc(Message):
    exchange: ClassVar[str] = "mlc.rpc"
    connection_id: str


class TokenGet(_Rpc):
    """Ask for a valid access token of a connection."""

    routing_key: ClassVar[str] = "token.get"


class TokenRefresh(_Rpc):
    """Exact answered 401 to the token with this fingerprint: refresh unless already done."""

    routing_key: ClassVar[str] = "token.refresh"
    fingerprint: str


class WebhookSecretGet(_Rpc):
    """Ask for the webhook secret that signs a connection's Exact webhooks."""

    routing_key: ClassVar[str] = "webhook-secret.get"


class ChannelCredentialsGet(_Rpc):
    """Ask for the Twilio/SendGrid accounts a connection brings (a company's own accounts)."""

    routing_key: ClassVar[str] = "channel-credentials.get"


class ChannelCredentials(Message):
    """Reply to ``channel-credentials.get``. A field left None means: use the install's
    default account (MLC_TWILIO_* / MLC_SENDGRID_*)."""

    routing_key: ClassVar[str] = "channel-credentials.reply"
    exchange: ClassVar[str] = ""
    connection_id: str
    twilio_account_sid: str | None = None
    twilio_auth_token: WireSecret | None = None
    twilio_messaging_service_sid: str | None = None
    sendgrid_api_key: WireSecret | None = None
    #: Verifies the connection's SendGrid event webhooks (public, not a secret).
    sendgrid_webhook_public_key: str | None = None
    #: Who the company's messages come from (not secrets): the caller id of its calls, and
    #: the From address, From name and Reply-To of its email.
    twilio_voice_from: str | None = None
    email_from: str | None = None
    email_from_name: str | None = None
    email_reply_to: str | None = None

    @property
    def has_twilio(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token)


class ConnectionsList(Message):
    """Ask for the connections that work (status active) and the divisions each serves."""

    routing_key: ClassVar[str] = "connections.list"
    exchange: ClassVar[str] = "mlc.rpc"


class ActiveConnection(BaseModel):
    connection_id: str
    divisions: list[int]


class Connections(Message):
    """Reply to ``connections.list``: no secret, only ids and division codes."""

    routing_key: ClassVar[str] = "connections.reply"
    exchange: ClassVar[str] = ""
    connections: list[ActiveConnection] = []


class AccessToken(Message):
    """Reply to ``token.get``/``token.refresh``. The token is a SecretStr: it never prints."""

    routing_key: ClassVar[str] = "token.reply"
    exchange: ClassVar[str] = ""
    connection_id: str
    access_token: WireSecret
    fingerprint: str
    expires_at: datetime
    base_url: str
    division: int
    #: Every division the connection serves (``division`` is the default one).
    divisions: list[int] = []


class WebhookSecret(Message):
    """Reply to ``webhook-secret.get``."""

    routing_key: ClassVar[str] = "webhook-secret.reply"
    exchange: ClassVar[str] = ""
    connection_id: str
    client_id: str
    secret: WireSecret


class RpcError(Message):
    """An RPC the server could not answer: ``kind`` tells the caller whether to retry."""

    routing_key: ClassVar[str] = "rpc.error"
    exchange: ClassVar[str] = ""
    kind: str  # "unknown_connection" | "needs_reconnect" | "unavailable"
    message: str
    #: For "unavailable": when asking again makes sense (e.g. a refresh not yet allowed).
    retry_after: float | None = None
