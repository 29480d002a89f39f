"""Settings of the Exact Online simulator.

It reads the shared ``MLC_`` variables (the app's client id and secret, webhook secret, initial
refresh token and division are the ones the services use, so both sides agree without set-up)
plus its own ``MLC_SIM_EXACT_*`` variables. Each field can also be passed by name in code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.settings import ServiceSettings

__all__ = ["Settings"]

_PREFIX = "MLC_SIM_EXACT_"


def _own(name: str) -> str:
    return _PREFIX + name.upper()


class Settings(ServiceSettings):
    """The simulator's typed settings; ``Settings()`` reads the environment."""

    model_config = SettingsConfigDict(
        env_prefix="MLC_", extra="ignore", frozen=True, populate_by_name=True
    )

    http_port: int = 8090
    #: A simulator is the simulator profile: it accepts the simulators' credentials by default.
    profile: Literal["production", "simulator"] = "simulator"

    #: Base URL the simulator is reached at: used in webhook ``ExactOnlineEndpoint`` values.
    #: When left unset it follows the bound host and port.
    public_url: str = Field("http://127.0.0.1:8090", validation_alias=_own("public_url"))
    #: When set, the default division is subscribed at start to the five topics the connector
    #: uses, with this callback URL and without a validation POST.
    callback_url: str | None = Field(None, validation_alias=_own("callback_url"))
    minutely_limit: int = Field(60, ge=1, validation_alias=_own("minutely_limit"))
    daily_limit: int = Field(5000, ge=1, validation_alias=_own("daily_limit"))
    #: Simulated seconds per real second; 0 freezes the clock (only ``/_sim/clock`` moves it).
    clock_speed: float = Field(1.0, ge=0, validation_alias=_own("clock_speed"))
    page_size: int = Field(60, ge=1, validation_alias=_own("page_size"))
    #: Rows per page of the sync APIs (``sync/...``), 1,000 as Exact's.
    sync_page_size: int = Field(1000, ge=1, validation_alias=_own("sync_page_size"))
    #: Nodes a ``$filter`` expression may have (``filters``: 4 per ``Key eq guid'..' or``
    #: term); past it the API answers 400 with the node-count message of Microsoft's OData
    #: stacks, whose default limit is 100. 0 turns the limit off.
    filter_node_limit: int = Field(100, ge=0, validation_alias=_own("filter_node_limit"))
    #: Exact blocks an endpoint for the rest of the hour after this many error responses.
    error_block: bool = Field(True, validation_alias=_own("error_block"))
    error_block_limit: int = Field(10, ge=1, validation_alias=_own("error_block_limit"))
    #: Delivery attempts per webhook (the first plus short retries).
    webhook_attempts: int = Field(3, ge=1, validation_alias=_own("webhook_attempts"))
    webhook_timeout_seconds: float = Field(
        10.0, gt=0, validation_alias=_own("webhook_timeout_seconds")
    )
