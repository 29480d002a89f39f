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
