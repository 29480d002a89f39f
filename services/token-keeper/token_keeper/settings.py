"""token-keeper settings: the shared contract, the token rotation policy, and whom it answers."""

from __future__ import annotations

from pydantic import Field, field_validator

from common import topology
from common.settings import ServiceSettings
from token_keeper.handlers import TokenPolicy

__all__ = ["Settings"]


def _production_users() -> dict[str, str]:
    return {service: topology.service_user(service) for service in topology.SERVICES}


class Settings(ServiceSettings):
    http_port: int = 8084
    #: Refresh when fewer seconds than this remain on the 600 s access token. Exact refuses a
    #: refresh sooner than ~570 s after the last one, so the margin must stay under 30 s.
    token_keeper_refresh_margin: int = 25
    #: Never ask Exact for a refresh sooner than this after the last one.
    token_keeper_min_refresh_interval: int = 575
    #: Refresh idle connections after this long (refresh tokens die after 30 days unused).
    token_keeper_keepalive_after_seconds: int = 7 * 24 * 3600
    #: How often the keep-alive and the connection metrics run.
    token_keeper_housekeeping_seconds: float = 60.0
    #: The AMQP user each service connects as (``MLC_RPC_USERS='{"ingress": "mlc-ingress",
    #: ...}'``): an RPC is answered only to the users of the services ``topology.RPC_CALLERS``
    #: names for it. Default: the production users ``mlc-<service>``. A service left out is
    #: answered nothing.
    rpc_users: dict[str, str] = Field(default_factory=_production_users)

    @field_validator("rpc_users")
    @classmethod
    def _known_services(cls, users: dict[str, str]) -> dict[str, str]:
        """A misspelt service name would silently lock that service out: refuse it."""
        unknown = sorted(set(users) - set(topology.SERVICES))
        if unknown:
            raise ValueError(f"unknown services {unknown}; known: {list(topology.SERVICES)}")
        return users

    def needed_credentials(self) -> tuple[str, ...]:
        """With ``MLC_EXACT_REFRESH_TOKEN`` the install's default connection is created from
        the ``MLC_EXACT_*`` settings, so all of them; without, none (``mlc connect`` adds
        connections)."""
        if not self.exact_refresh_token.get_secret_value():
            return ()
        return (
            "exact_client_id",
            "exact_client_secret",
            "exact_webhook_secret",
            "exact_division",
            "exact_refresh_token",
        )

    def policy(self) -> TokenPolicy:
        return TokenPolicy(
            margin=self.token_keeper_refresh_margin,
            min_interval=self.token_keeper_min_refresh_interval,
            keepalive_after=self.token_keeper_keepalive_after_seconds,
        )

    def rpc_authorization(self) -> dict[str, frozenset[str]]:
        """RPC routing key -> the AMQP users allowed to ask it (``serve_rpc``'s table)."""
        return {
            key: frozenset(self.rpc_users[s] for s in callers if s in self.rpc_users)
            for key, callers in topology.RPC_CALLERS.items()
        }

    db_pool_max: int = 2
