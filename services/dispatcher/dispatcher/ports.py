"""What the dispatcher's handlers need: a claim store (with its outbox), a notifier that
speaks each channel's provider, and the suppression list."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from common.contracts import Channel, Message, SendNotification

__all__ = [
    "Claim",
    "ClaimStore",
    "Notifier",
    "SendReceipt",
    "Suppression",
    "SuppressionList",
    "Unsettled",
]

ClaimOutcome = Literal[
    "claimed",
    "sent",
    "in_flight",
    "stale",
    "failed",
    "ambiguous",
    "deferred",
    "released",
    "skipped",
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
    #: Calls: who answered (Twilio's answering machine detection), when known.
    answered_by: str | None = None


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

    async def command_for(
        self, *, provider_id: str | None = None, notification_id: str | None = None
    ) -> SendNotification | None:
        """The command of the claim that got ``provider_id`` or is ``notification_id``'s."""
        ...

    async def erase_recipients(self, contact_id: str | None, keys: list[str]) -> int:
        """Forget the recipient kept in settled claims' commands (an erasure request)."""
        ...

    async def confirm_sent(self, notification_id: str, provider_id: str) -> bool:
        """Settle a ``sending``/``ambiguous`` claim as sent because the provider reported
        on it; False when it was settled already."""
        ...


class Notifier(Protocol):
    """Sends a command on its channel (SMS and calls through Twilio, email through SendGrid)
    from the connection's own account or the install's."""

    async def send(self, command: SendNotification) -> SendReceipt:
        """Raises PermanentError, TransientError or AmbiguousOutcome."""
        ...

    async def find(self, command: SendNotification, *, since: datetime) -> SendReceipt | None:
        """What the provider created for this command since ``since``, or None when it proves
        it never got the request. Raises TransientError when that cannot be told yet."""
        ...

    async def fetch(
        self, provider_id: str, *, connection_id: str, channel: Channel | None
    ) -> SendReceipt:
        """The current status of a sent message or call. Raises TransientError, or
        PermanentError when the provider does not know it (or cannot be asked)."""
        ...


@dataclass(frozen=True)
class Suppression:
    connection_id: str
    channel: str
    address_masked: str
    reason: str
    source: str


class SuppressionList(Protocol):
    async def find(self, connection_id: str, channel: str, address: str) -> Suppression | None:
        """The suppression that forbids sending on ``channel`` to ``address`` for this
        connection (its own, or one held for every connection), if any."""
        ...

    async def add(
        self,
        scope: str,
        channels: tuple[str, ...],
        address: str,
        *,
        reason: str,
        source: str,
        notification_id: str | None = None,
        created_by: str | None = None,
    ) -> int:
        """Suppress ``address`` on each channel; returns how many were new (each new one is
        announced as ``suppression.added``)."""
        ...

    async def lift(
        self,
        scope: str | None,
        channels: tuple[str, ...],
        address: str,
        *,
        reasons: tuple[str, ...] | None,
        source: str,
        requested_by: str | None = None,
        note: str | None = None,
    ) -> int:
        """Lift the suppressions of ``address`` on each channel (only those for ``reasons``
        when given: a START lifts an opt-out, not a bounce) in ``scope`` (None: in every
        scope); returns how many."""
        ...
