"""auditor settings."""

from __future__ import annotations

from pydantic import SecretStr

from common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    http_port: int = 8083
    #: Bearer token of the admin API (``/admin/...``: failures, retries, unmasked trails).
    #: Unset, the admin API answers 403 and only the masked ``/trail`` is served.
    auditor_admin_token: SecretStr | None = None
    #: A notification sent this long ago without a final status gets its status fetched.
    auditor_status_check_after_seconds: float = 900.0
    #: How often the auditor looks for such notifications, and how often each is asked.
    auditor_status_check_interval_seconds: float = 60.0
    auditor_status_checks_max: int = 3
