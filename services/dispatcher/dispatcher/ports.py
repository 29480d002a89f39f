"""What the dispatcher's handlers need: a claim store (with its outbox) and a notifier."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from common.contracts import Message, SendNotification

__all__ = ["Claim", "ClaimStore", "Notifier", "SendReceipt", "Unsettled"]

ClaimOutcome = Literal[
    "claimed", "sent", "in_flight", "stale", "failed", "ambiguous", "deferred", "released"
]


@dataclass(frozen=True)
class Claim:
    """The result of trying to claim a key: ``claimed`` means this caller may send.

    ``attempts`` counts every claim taken for the key; ``budget_used`` only those since the
    last operator release (the bound applies to it). ``retry_after`` is set when ``deferred``.
    """

    outcome: ClaimOutcome
    attempts: int
    provider_id: str | None = None
    budget_used: int = 0
    retry_after: float | None = None


@dataclass(frozen=True)
class SendReceipt:
    provider_id: str
    status: str
    error_code: str | None = None


@dataclass(frozen=True)
class Unsettled:
    """A claim whose send may or may not have happened: ``sending`` past its deadline (the
    sender died) or ``ambiguous`` (no answer after the request left)."""

    key: str
    notification_id: str
    state: str
    attempts: int
    budget_used: int
    claimed_at: datetime
    command: SendNotification | None


class ClaimStore(Protocol):
    async def claim(self, command: SendNotification) -> Claim:
        """Take the claim unless someone holds or used it, or ``retry_at`` is still ahead."""
        ...

    async def settle(
        self,
        key: str,
        state: str,
        event: Message,
        *,
        provider_id: str | None = None,
        error_code: str | None = None,
        reason: str | None = None,
        retry_at: datetime | None = None,
        correlation_id: str | None = None,
    ) -> None:
        """Move the claim to ``state`` and queue ``event`` in the outbox, in one transaction."""
        ...

    async def release(
        self, notification_id: str, *, requested_by: str | None, correlation_id: str | None
    ) -> bool:
        """Release a ``failed`` claim (an operator's command) and queue NotificationReleased
        in the same transaction; False when the notification has no failed claim. A claim
        left ``released`` whose every command copy was parked (retry tiers used up) counts as
        failed: its attempt budget starts again too."""
        ...

    async def unsettled(self, *, limit: int) -> list[Unsettled]:
        """Claims due for resolution, each leased to this caller for one stale period."""
        ...

    async def retake(self, key: str) -> Claim:
        """Claim an unsettled key again after Twilio proved it never got the request."""
        ...


class Notifier(Protocol):
    async def send_sms(self, to: str, body: str, *, connection_id: str) -> SendReceipt:
        """Send from the connection's Twilio account (its own, or the install's).
        Raises PermanentError, TransientError or AmbiguousOutcome."""
        ...

    async def find_sms(
        self, to: str, body: str, *, since: datetime, connection_id: str
    ) -> SendReceipt | None:
        """The message with this body that Twilio created for ``to`` since ``since``, or None
        when Twilio has none (proof that the request never reached it). Raises
        TransientError when Twilio cannot be asked right now."""
        ...

    async def fetch_sms(self, provider_id: str, *, connection_id: str) -> SendReceipt:
        """The message's current status (``GET Messages/{Sid}.json``). Raises TransientError,
        or PermanentError when Twilio does not know the SID."""
        ...
