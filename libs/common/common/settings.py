"""Settings every service and simulator reads, from ``MLC_`` environment variables.

The defaults form a working local setup: RabbitMQ and PostgreSQL on 127.0.0.1 and the two
built-in simulators standing in for Exact Online and Twilio. The simulators read the same
variables, so both sides of each vendor conversation agree on credentials without extra setup.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["REAL_VENDOR_HOSTS", "SIMULATOR_DEFAULTS", "ServiceSettings"]

#: Credentials the simulators accept out of the box. They are not secrets: they only open the
#: built-in simulators, never a real account.
SIMULATOR_DEFAULTS = {
    "exact_client_id": "6b1d2c3e-4f50-4a61-8b72-9c8d7e6f5a40",
    "exact_client_secret": "sim-exact-client-secret",
    "exact_webhook_secret": "sim-exact-webhook-secret",
    "exact_refresh_token": "sim-exact-initial-refresh-token",
    "exact_division": 3108123,
    "twilio_account_sid": "AC" + "5ec0de" * 5 + "00",
    "twilio_auth_token": "sim-twilio-auth-token",
    "twilio_messaging_service_sid": "MG" + "5ec0de" * 5 + "01",
    "twilio_voice_from": "+15005550006",
    "sendgrid_api_key": "SG.sim-sendgrid-key",
    "email_from": "billing@example.com",
    # The public half of the Twilio simulator's event-signing key (sim_twilio.event_webhook).
    "sendgrid_webhook_public_key": (
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZ5c24A7US60Dbkhb2kZQ9SvWkzZ1"
        "po71uPsX3tAwIIAPlC07JXbFYflGeXMP5Jk5bQtbAlGZb4JYrXuOuOX7kw=="
    ),
}


class ServiceSettings(BaseSettings):
    """The shared contract of architecture section 8. Services subclass it for their own fields."""

    model_config = SettingsConfigDict(env_prefix="MLC_", extra="ignore", frozen=True)

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/mlc"
    #: Most PostgreSQL connections this service holds (services subclass with their need;
    #: the whole install should stay well under the server's max_connections).
    db_pool_max: int = 4
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    log_json: bool = True
    log_level: str = "INFO"
    #: On SIGTERM: how long in-flight deliveries may take to finish before the process
    #: closes (unfinished ones return to their queue). Below Kubernetes' default 30 s.
    shutdown_grace_seconds: float = 20.0

    exact_base_url: str = "http://127.0.0.1:8090"
    twilio_api_base_url: str = "http://127.0.0.1:8091"
    sendgrid_api_base_url: str = "http://127.0.0.1:8091"
    public_base_url: str = "http://127.0.0.1:8080"
    secret_key: SecretStr | None = None

    twilio_account_sid: str = SIMULATOR_DEFAULTS["twilio_account_sid"]  # type: ignore[assignment]
    twilio_auth_token: SecretStr = SecretStr(str(SIMULATOR_DEFAULTS["twilio_auth_token"]))
    #: An API key SID (SK...) and secret for REST calls; the auth token still signs callbacks.
    twilio_api_key_sid: str | None = None
    twilio_api_key_secret: SecretStr | None = None
    twilio_messaging_service_sid: str = SIMULATOR_DEFAULTS["twilio_messaging_service_sid"]  # type: ignore[assignment]
    twilio_voice_from: str = SIMULATOR_DEFAULTS["twilio_voice_from"]  # type: ignore[assignment]
    sendgrid_api_key: SecretStr = SecretStr(str(SIMULATOR_DEFAULTS["sendgrid_api_key"]))
    email_from: str = SIMULATOR_DEFAULTS["email_from"]  # type: ignore[assignment]
    #: The display name of the From address, and a Reply-To (none: replies go to From).
    email_from_name: str | None = None
    email_reply_to: str | None = None
    #: SendGrid's "Signed Event Webhook" verification key (base64 DER), from the SendGrid
    #: console or its API; a connection with its own SendGrid account brings its own.
    sendgrid_webhook_public_key: str = SIMULATOR_DEFAULTS["sendgrid_webhook_public_key"]  # type: ignore[assignment]

    #: The default connection of a single-company install; its id in URLs and messages.
    exact_connection_id: str = "default"
    exact_client_id: str = SIMULATOR_DEFAULTS["exact_client_id"]  # type: ignore[assignment]
    exact_client_secret: SecretStr = SecretStr(str(SIMULATOR_DEFAULTS["exact_client_secret"]))
    exact_webhook_secret: SecretStr = SecretStr(str(SIMULATOR_DEFAULTS["exact_webhook_secret"]))
    exact_division: int = SIMULATOR_DEFAULTS["exact_division"]  # type: ignore[assignment]
    exact_refresh_token: SecretStr = SecretStr(str(SIMULATOR_DEFAULTS["exact_refresh_token"]))

    def twilio_credentials(self) -> tuple[str, str]:
        """Basic-auth pair for Twilio's REST API: an API key when configured (Twilio's advice),
        else the account SID and auth token. The auth token still signs callbacks."""
        if self.twilio_api_key_sid and self.twilio_api_key_secret:
            return self.twilio_api_key_sid, self.twilio_api_key_secret.get_secret_value()
        return self.twilio_account_sid, self.twilio_auth_token.get_secret_value()

    def public_url_problem(self, vendor_base_url: str) -> str | None:
        """Why ``public_base_url`` cannot receive the callbacks of the vendor at
        ``vendor_base_url``, or None. Only a real vendor's API (``REAL_VENDOR_HOSTS``; the
        simulators answer anywhere else) needs an HTTPS URL it can reach: Exact refuses a
        non-HTTPS CallbackURL and Twilio cannot call a loopback or private address."""
        vendor = urlsplit(vendor_base_url).hostname or ""
        if not any(vendor == h or vendor.endswith("." + h) for h in REAL_VENDOR_HOSTS):
            return None
        parts = urlsplit(self.public_base_url)
        if parts.scheme != "https":
            return f"MLC_PUBLIC_BASE_URL must be https:// for {vendor} ({parts.scheme}://)"
        if _private_host(self.public_base_url):
            return (
                f"MLC_PUBLIC_BASE_URL must be reachable from the internet for {vendor} "
                f"({parts.hostname} is not)"
            )
        return None


#: The domains of the real vendors' APIs (Exact's regional hosts, Twilio, SendGrid).
REAL_VENDOR_HOSTS = (
    "exactonline.nl",
    "exactonline.be",
    "exactonline.de",
    "exactonline.fr",
    "exactonline.co.uk",
    "exactonline.com",
    "exact.com",
    "twilio.com",
    "sendgrid.com",
)


def _private_host(url: str) -> bool:
    """The URL's host is loopback, private, link-local or a local name."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # a bare name (``ingress``) resolves inside a private network only; a dotted name is
        # taken as public (DNS is not asked)
        return "." not in host
    return address.is_loopback or address.is_private or address.is_link_local
