"""auditor settings."""

from __future__ import annotations

from common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    http_port: int = 8083
