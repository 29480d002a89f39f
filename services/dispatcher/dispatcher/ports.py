"""What the dispatcher's handler needs: a claim store and a notifier."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Claim", "ClaimStore", "Notifier", "SendReceipt"]

ClaimOutcome = Literal["claimed", "sent", "in_flight", "stale", "failed", "ambiguous"]


@dataclass(frozen=True)
class Claim:
    """The result of trying to claim a key: ``claimed`` means this caller may send."""

    outcome: ClaimOutcome
    attempts: int
    provider_id: str | None = None


@dataclass(frozen=True)
class SendReceipt:
    provider_id: str
    status: str


class ClaimStore(Protocol):
    async def claim(self, key: str, notification_id: str, channel: str) -> Claim: ...

    async def mark(
        self, key: str, state: str, *, provider_id: str | None = None, error_code: str | None = None
    ) -> None: ...


class Notifier(Protocol):
    async def send_sms(self, to: str, body: str, *, connection_id: str) -> SendReceipt:
        """Send from the connection's Twilio account (its own, or the install's).
        Raises PermanentError, TransientError or AmbiguousOutcome."""
        ...
