"""Settings of the Twilio simulator: the shared ``MLC_`` contract plus ``MLC_SIM_TWILIO_*``.

The credentials it accepts are the shared ones (``MLC_TWILIO_ACCOUNT_SID``,
``MLC_TWILIO_AUTH_TOKEN``, optional ``MLC_TWILIO_API_KEY_SID``/``_SECRET``,
``MLC_SENDGRID_API_KEY``), so the connector and the simulator agree without extra setup.
"""

from __future__ import annotations

from typing import Literal

from common.settings import ServiceSettings
from sim_twilio.magic import POOL_SENDER

__all__ = ["Settings"]

FinalStatus = Literal["delivered", "undelivered", "failed", "sent", "read"]


class Settings(ServiceSettings):
    """Typed settings; every simulator-only field reads ``MLC_SIM_TWILIO_<NAME>``."""

    http_port: int = 8091
    #: A simulator is the simulator profile: it accepts the simulators' credentials by default.
    profile: Literal["production", "simulator"] = "simulator"

    #: Seconds between the create and each status step (``sent``, then the final status).
    sim_twilio_callback_delay: float = 0.2
    #: Where a message ends when no fault says otherwise.
    sim_twilio_final_status: FinalStatus = "delivered"
    #: Delivery attempts per status callback (first try included) before giving up.
    sim_twilio_callback_attempts: int = 3
    #: Wait before the first retry of a failed callback; doubles on each further retry.
    sim_twilio_callback_backoff: float = 0.1
    #: Per-attempt timeout of a callback POST, in seconds.
    sim_twilio_callback_timeout: float = 5.0
    #: The sender a Messaging Service "picks" from its pool when no ``From`` is given.
    #: Default: Twilio's documented always-valid magic sender.
    sim_twilio_pool_sender: str = POOL_SENDER
    #: The Messaging Service's own status callback URL, used for a message that names the
    #: service but gives no ``StatusCallback`` (Twilio's per-message URL overrides it).
    sim_twilio_service_status_callback: str | None = None
    #: Seconds a simulated call lasts (``CallDuration`` on ``completed``).
    sim_twilio_call_duration: int = 7
    #: Where SendGrid events about accepted mail are posted (SendGrid's account-level Event
    #: Webhook URL); unset: no events.
    sim_twilio_event_webhook_url: str | None = None
    #: Where an inbound SMS injected through ``POST /_sim/inbound`` is posted (the number's
    #: incoming-message webhook).
    sim_twilio_inbound_url: str | None = None
    #: Default page size of list endpoints (Twilio's default is 50).
    sim_twilio_page_size: int = 50
    #: The kind of the configured API key (MLC_TWILIO_API_KEY_SID): a "standard" key may use
    #: every resource except /Accounts and /Keys (Twilio's Key resource page); "main" all.
    sim_twilio_api_key_type: Literal["standard", "main"] = "standard"
