"""enricher settings."""

from __future__ import annotations

from common.settings import ServiceSettings

__all__ = ["Settings"]


class Settings(ServiceSettings):
    http_port: int = 8081
    #: Region used to read a contact's number written without a country code, when the
    #: contact and its account name no country.
    enricher_default_region: str = "NL"
    enricher_exact_timeout: float = 20.0
    #: The sending company's name as it appears in message texts.
    enricher_sender_name: str = "Demo Company"
