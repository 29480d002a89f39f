"""Settings every service and simulator reads, from ``MLC_`` environment variables.

The defaults point at a local setup: RabbitMQ and PostgreSQL on 127.0.0.1 and the two built-in
simulators standing in for Exact Online and Twilio. No credential has a default, except under
the simulator profile (``MLC_PROFILE=simulator``: the demo, the tests, compose and the
Kubernetes simulated overlay), where every credential left unset takes the simulators' own
value (``SIMULATOR_DEFAULTS``); the simulators read the same variables, so both sides of each
vendor conversation agree without extra setup. A service asks ``credentials_problem`` before it
starts: a credential it needs that is unset, or a simulator value or ``replace-me`` sent to a
real vendor, stops it with one line naming the variable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["PLACEHOLDER", "REAL_VENDOR_HOSTS", "SIMULATOR_DEFAULTS", "ServiceSettings"]

#: Credentials the simulators accept out of the box, applied only under ``MLC_PROFILE=simulator``.
#: They are not secrets (they are in this repository): they only open the built-in simulators,
#: and a service refuses to send any of them to a real vendor.
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

#: The value the deployment templates put where an operator must fill in a secret.
PLACEHOLDER = "replace-me"

#: Each credential setting and the setting naming the API of the vendor it is for.
_VENDOR_OF = {
    "exact_client_id": "exact_base_url",
    "exact_client_secret": "exact_base_url",
    "exact_webhook_secret": "exact_base_url",
    "exact_refresh_token": "exact_base_url",
    "exact_division": "exact_base_url",
    "twilio_account_sid": "twilio_api_base_url",
    "twilio_auth_token": "twilio_api_base_url",
    "twilio_api_key_sid": "twilio_api_base_url",
    "twilio_api_key_secret": "twilio_api_base_url",
    "twilio_messaging_service_sid": "twilio_api_base_url",
    "twilio_voice_from": "twilio_api_base_url",
    "sendgrid_api_key": "sendgrid_api_base_url",
    "sendgrid_webhook_public_key": "sendgrid_api_base_url",
    "email_from": "sendgrid_api_base_url",
}


class ServiceSettings(BaseSettings):
    """The shared contract of architecture section 8. Services subclass it for their own fields."""

    model_config = SettingsConfigDict(env_prefix="MLC_", extra="ignore", frozen=True)

    #: ``simulator``: every credential left unset takes its ``SIMULATOR_DEFAULTS`` value.
    #: ``production`` (the default): none has a default; see ``credentials_problem``.
    profile: Literal["production", "simulator"] = "production"
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
    #: Most messages of one routing key that one AMQP message carries when they are published
    #: together (ADR 0010); 1 publishes every message alone.
    publish_batch_max: int = Field(default=100, ge=1)

    exact_base_url: str = "http://127.0.0.1:8090"
    twilio_api_base_url: str = "http://127.0.0.1:8091"
    sendgrid_api_base_url: str = "http://127.0.0.1:8091"
    public_base_url: str = "http://127.0.0.1:8080"
    secret_key: SecretStr | None = None

    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    #: An API key SID (SK...) and secret for REST calls; the auth token still signs callbacks.
    twilio_api_key_sid: str | None = None
    twilio_api_key_secret: SecretStr | None = None
    twilio_messaging_service_sid: str = ""
    twilio_voice_from: str = ""
    sendgrid_api_key: SecretStr = SecretStr("")
    email_from: str = ""
    #: The display name of the From address, and a Reply-To (none: replies go to From).
    email_from_name: str | None = None
    email_reply_to: str | None = None
    #: SendGrid's "Signed Event Webhook" verification key (base64 DER), from the SendGrid
    #: console or its API; a connection with its own SendGrid account brings its own.
    sendgrid_webhook_public_key: str = ""

    #: The default connection of a single-company install; its id in URLs and messages.
    exact_connection_id: str = "default"
    exact_client_id: str = ""
    exact_client_secret: SecretStr = SecretStr("")
    exact_webhook_secret: SecretStr = SecretStr("")
    #: 0: none configured.
    exact_division: int = 0
    exact_refresh_token: SecretStr = SecretStr("")

    @model_validator(mode="before")
    @classmethod
    def _simulator_profile(cls, data: Any) -> Any:
        """Under the simulator profile, fill each credential not given with the simulators'."""
        if not isinstance(data, dict):
            return data
        if data.get("profile", cls.model_fields["profile"].default) != "simulator":
            return data
        return {**SIMULATOR_DEFAULTS, **data}

    def needed_credentials(self) -> tuple[str, ...]:
        """The credential settings this service cannot run without (services override)."""
        return ()

    def refuse_unsafe_credentials(self, service: str) -> None:
        """SystemExit with one line (``mlc-<service>: cannot start: ...``) when
        ``credentials_problem`` finds one for ``needed_credentials``."""
        if problem := self.credentials_problem(self.needed_credentials()):
            raise SystemExit(f"mlc-{service}: cannot start: {problem}")

    def credentials_problem(self, needed: Iterable[str]) -> str | None:
        """Why a service needing the credential settings ``needed`` must not start, in one
        line naming the variable, or None. A needed credential is unset; or a credential (any,
        needed or not) holds a simulator value or ``replace-me`` while its vendor's URL is a
        real vendor's (``REAL_VENDOR_HOSTS``), where it would open nothing or, for a webhook
        secret or auth token, accept callbacks signed with a public secret."""
        for name in needed:
            if not _plain(getattr(self, name)):
                return (
                    f"{_variable(name)} is not set (MLC_PROFILE=simulator uses the built-in "
                    "simulators' credentials)"
                )
        for name, vendor_setting in _VENDOR_OF.items():
            value = _plain(getattr(self, name))
            vendor = urlsplit(getattr(self, vendor_setting)).hostname or ""
            if not value or not _real_vendor(vendor):
                continue
            if value == PLACEHOLDER:
                return f"{_variable(name)} is still {PLACEHOLDER!r}; set it for {vendor}"
            if value == str(SIMULATOR_DEFAULTS.get(name)):
                return (
                    f"{_variable(name)} is the simulators' value, not a credential for {vendor}"
                    + (" (unset MLC_PROFILE=simulator)" if self.profile == "simulator" else "")
                )
        return None

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
        if not _real_vendor(vendor):
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


def _real_vendor(host: str) -> bool:
    return any(host == h or host.endswith("." + h) for h in REAL_VENDOR_HOSTS)


def _plain(value: object) -> str:
    """A setting's value as text: a secret opened, 0 and None as empty."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return "" if value in (None, 0) else str(value)


def _variable(name: str) -> str:
    return "MLC_" + name.upper()


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
