"""What the token handlers need from the outside world."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from common.contracts import ChannelCredentials

__all__ = ["Connection", "ConnectionStore", "RefreshSession", "TokenEndpoint", "TokenPair"]


@dataclass(frozen=True)
class Connection:
    """A connection row with its secrets opened (held only in memory, never logged)."""

    id: str
    base_url: str
    client_id: str
    client_secret: str
    webhook_secret: str
    division: int
    refresh_token: str
    access_token: str | None
    access_fingerprint: str | None
    access_expires_at: datetime | None
    refreshed_at: datetime | None
    status: str
    divisions: tuple[int, ...] = ()


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


class TokenEndpoint(Protocol):
    async def refresh(self, connection: Connection) -> TokenPair:
        """Exchange the connection's refresh token. Raises ChainBroken or TransientError."""
        ...


class RefreshSession(Protocol):
    """The connection row re-read under its refresh lock, and the way to persist a new pair."""

    row: Connection | None

    async def save(self, pair: TokenPair, now: datetime) -> Connection:
        """Store the new pair; it is durable when the session's block exits."""
        ...


class ConnectionStore(Protocol):
    async def get(self, connection_id: str) -> Connection | None: ...

    def refresh_lock(self, connection_id: str) -> AbstractAsyncContextManager[RefreshSession]:
        """Hold the connection's refresh lock across all replicas for the block."""
        ...

    async def mark_needs_reconnect(self, connection_id: str, reason: str) -> None: ...

    async def channel_credentials(self, connection_id: str) -> ChannelCredentials | None: ...

    async def active(self) -> list[tuple[str, list[int]]]:
        """Every connection that works (status active): its id and the divisions it serves."""
        ...
