"""Twilio delivery status, as ingress publishes it after verifying the callback signature."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from common.contracts.base import Event, stable_id

__all__ = ["TwilioStatus"]


class TwilioStatus(Event):
    """One status callback. Routing key ``twilio.status.<status>``."""

    routing_key: ClassVar[str] = "twilio.status"
    provider_id: str
    status: str
    error_code: str | None = None
    raw: dict[str, str]
    received_at: datetime

    def key(self) -> str:
        return f"twilio.status.{self.status}"

    def message_id(self) -> str:
        # Twilio repeats callbacks; the same (sid, status) is the same fact.
        return str(stable_id("twilio.status", self.provider_id, self.status))
