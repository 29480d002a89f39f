"""token-keeper's RPC handlers: hand out access tokens, refresh them one caller at a time.

Refresh rule: a token with fewer than ``margin`` seconds left is refreshed under the
connection's lock; the row is re-read after taking the lock (another replica may have just
refreshed), and the new pair is committed before anyone gets the access token.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog
from pydantic import SecretStr

from common.contracts import AccessToken, TokenGet, TokenRefresh, WebhookSecret, WebhookSecretGet
from common.errors import PermanentError, TransientError
from token_keeper.adapters.exact_oauth import ChainBroken
from token_keeper.ports import Connection, ConnectionStore, TokenEndpoint

__all__ = ["HANDLERS", "get_token", "get_webhook_secret", "refresh_token"]

log = structlog.get_logger("token-keeper")
Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def _fresh(row: Connection, now: datetime, margin: int) -> bool:
    return (
        row.access_token is not None
        and row.access_expires_at is not None
        and row.access_expires_at - now > timedelta(seconds=margin)
    )


def _reply(row: Connection) -> AccessToken:
    if not (row.access_token and row.access_fingerprint and row.access_expires_at):
        raise TransientError(f"connection {row.id!r} has no access token yet")
    return AccessToken(
        connection_id=row.id,
        access_token=SecretStr(row.access_token),
        fingerprint=row.access_fingerprint,
        expires_at=row.access_expires_at,
        base_url=row.base_url,
        division=row.division,
    )


def _usable(row: Connection | None, connection_id: str) -> Connection:
    if row is None:
        raise PermanentError(f"unknown connection {connection_id!r}", code="unknown_connection")
    if row.status == "needs_reconnect":
        raise TransientError(
            f"connection {connection_id!r} needs a new consent", code="needs_reconnect"
        )
    return row


async def _refresh_locked(
    connection_id: str,
    *,
    store: ConnectionStore,
    endpoint: TokenEndpoint,
    clock: Clock,
    still_needed: Callable[[Connection], bool],
) -> Connection:
    try:
        async with store.refresh_lock(connection_id) as session:
            row = _usable(session.row, connection_id)
            if not still_needed(row):
                return row
            pair = await endpoint.refresh(row)
            saved = await session.save(pair, clock())
    except ChainBroken as exc:
        await store.mark_needs_reconnect(connection_id, str(exc))
        log.error("connection_needs_reconnect", connection_id=connection_id, reason=str(exc))
        raise
    log.info("token_refreshed", connection_id=connection_id, fingerprint=saved.access_fingerprint)
    return saved


async def get_token(
    request: TokenGet,
    *,
    store: ConnectionStore,
    endpoint: TokenEndpoint,
    margin: int,
    clock: Clock = _now,
) -> AccessToken:
    row = _usable(await store.get(request.connection_id), request.connection_id)
    if _fresh(row, clock(), margin):
        return _reply(row)
    row = await _refresh_locked(
        request.connection_id,
        store=store,
        endpoint=endpoint,
        clock=clock,
        still_needed=lambda r: not _fresh(r, clock(), margin),
    )
    return _reply(row)


async def refresh_token(
    request: TokenRefresh, *, store: ConnectionStore, endpoint: TokenEndpoint, clock: Clock = _now
) -> AccessToken:
    """Exact refused the token with ``request.fingerprint``: refresh unless someone already did,
    so a hundred callers reporting the same token cause one refresh."""
    row = await _refresh_locked(
        request.connection_id,
        store=store,
        endpoint=endpoint,
        clock=clock,
        still_needed=lambda r: r.access_fingerprint in (None, request.fingerprint),
    )
    return _reply(row)


async def get_webhook_secret(request: WebhookSecretGet, *, store: ConnectionStore) -> WebhookSecret:
    row = await store.get(request.connection_id)
    if row is None:
        raise PermanentError(
            f"unknown connection {request.connection_id!r}", code="unknown_connection"
        )
    return WebhookSecret(
        connection_id=row.id, client_id=row.client_id, secret=SecretStr(row.webhook_secret)
    )


#: RPC routing key -> (request model, handler); ports are bound in app.py.
HANDLERS = {
    TokenGet.routing_key: (TokenGet, get_token),
    TokenRefresh.routing_key: (TokenRefresh, refresh_token),
    WebhookSecretGet.routing_key: (WebhookSecretGet, get_webhook_secret),
}
