"""Wire contracts: every message that crosses the broker, defined once.

``Event`` (a fact, past tense, any number of consumers, exchange ``mlc.events``) and ``Command``
(a request for work, one handler, exchange ``mlc.commands``) share the ``Message`` base. The
envelope travels in AMQP properties (see ``common.amqp``); the body is the model as JSON.
"""

from common.contracts.base import SCHEMA_VERSION, Command, Event, Message
from common.contracts.email import EmailEvent
from common.contracts.exact import ExactWebhookReceived, PaymentReceived
from common.contracts.notifications import (
    FAILURE_REASONS,
    Channel,
    CheckDeliveryStatus,
    NotificationAmbiguous,
    NotificationDeferred,
    NotificationFailed,
    NotificationReleased,
    NotificationSent,
    NotificationSkipped,
    Recipient,
    ReleaseNotification,
    SendNotification,
    SourceDocument,
)
from common.contracts.privacy import ForgetContact
from common.contracts.suppressions import (
    INSTALL_SCOPE,
    SUPPRESSION_REASONS,
    SuppressionChanged,
    address_key,
    normalise_address,
)
from common.contracts.tokens import (
    AccessToken,
    ActiveConnection,
    ChannelCredentials,
    ChannelCredentialsGet,
    Connections,
    ConnectionsList,
    RpcError,
    TokenGet,
    TokenRefresh,
    WebhookSecret,
    WebhookSecretGet,
)
from common.contracts.twilio import InboundSms, TwilioStatus, TwilioStatuses

__all__ = [
    "FAILURE_REASONS",
    "INSTALL_SCOPE",
    "SCHEMA_VERSION",
    "SUPPRESSION_REASONS",
    "AccessToken",
    "ActiveConnection",
    "Channel",
    "ChannelCredentials",
    "ChannelCredentialsGet",
    "CheckDeliveryStatus",
    "Command",
    "Connections",
    "ConnectionsList",
    "EmailEvent",
    "Event",
    "ExactWebhookReceived",
    "ForgetContact",
    "InboundSms",
    "Message",
    "NotificationAmbiguous",
    "NotificationDeferred",
    "NotificationFailed",
    "NotificationReleased",
    "NotificationSent",
    "NotificationSkipped",
    "PaymentReceived",
    "Recipient",
    "ReleaseNotification",
    "RpcError",
    "SendNotification",
    "SourceDocument",
    "SuppressionChanged",
    "TokenGet",
    "TokenRefresh",
    "TwilioStatus",
    "TwilioStatuses",
    "WebhookSecret",
    "WebhookSecretGet",
    "address_key",
    "normalise_address",
]
