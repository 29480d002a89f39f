"""token-keeper's handlers: hand out access tokens and rotate them without breaking the chain.

Exact's rules (reference exact-online.md §2.4-2.6): access tokens live 600 s; a refresh sooner
than ~570 s after the last is refused (and counts toward the hourly error block); every
refresh rotates the refresh token and reusing an old one breaks the chain; a refresh token
unused for 30 days dies. So:

- one refresher per connection across all replicas (the store's advisory lock), the row re-read
  after taking the lock, the new pair committed before anyone gets the access token;
- never ask Exact before ``policy.min_interval`` has passed since the last refresh;
- refresh when fewer than ``policy.margin`` seconds are left, or when Exact refused the token
  a caller names by fingerprint (a hundred callers naming it cause one refresh);
- a keep-alive refreshes connections idle for ``policy.keepalive_after``, well inside 30 days;
- a broken chain marks the connection ``needs_reconnect``: its work waits, it does not fail.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import structlog
from pydantic import SecretStr

from common.contracts import (
    AccessToken,
    ActiveConnection,
    ChannelCredentials,
    ChannelCredentialsGet,
    Connections,
    ConnectionsList,
    TokenGet,
    TokenRefresh,
    WebhookSecret,
    WebhookSecretGet,
)
from common.errors import PermanentError, TransientError
from common.rpc import RpcRoutes, rpc_route
from token_keeper.adapters.exact_oauth import ChainBroken
from token_keeper.ports import Connection, ConnectionStore, TokenEndpoint

__all__ = [
    "Clock",
    "TokenPolicy",
    "get_channel_credentials",
    "get_token",
    "get_webhook_secret",
    "keep_alive",
    "list_connections",
    "refresh_token",
    "routes",
]

log = structlog.get_logger("token-keeper")
Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class TokenPolicy:
    #: Refresh when fewer seconds than this remain on the access token (< 600 - min_interval).
    margin: int = 25
    #: Never refresh sooner than this after the last refresh (Exact refuses < ~570 s).
    min_interval: int = 575
    #: Refresh an idle connection after this long, so its refresh token never ages out (30 d).
    keepalive_after: int = 7 * 24 * 3600


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
        divisions=list(row.divisions or (row.division,)),
    )


def _usable(row: Connection | None, connection_id: str) -> Connection:
    if row is None:
        raise PermanentError(f"unknown connection {connection_id!r}", code="unknown_connection")
    if row.status == "needs_reconnect":
        raise TransientError(
            f"connection {connection_id!r} needs a new consent", code="needs_reconnect"
        )
    return row


def _still_valid(row: Connection, now: datetime, margin: float = 5.0) -> bool:
    """The row's access token is usable for at least ``margin`` more seconds."""
    return (
        row.access_token is not None
        and row.access_expires_at is not None
        and (row.access_expires_at - now).total_seconds() > margin
    )


async def _refresh_locked(
    connection_id: str,
    *,
    store: ConnectionStore,
    endpoint: TokenEndpoint,
    clock: Clock,
    policy: TokenPolicy,
    still_needed: Callable[[Connection], bool],
) -> Connection:
    try:
        async with store.refresh_lock(connection_id) as session:
            row = _usable(session.row, connection_id)
            if not still_needed(row):
                return row
            now = clock()
            if row.refreshed_at is not None:
                wait = policy.min_interval - (now - row.refreshed_at).total_seconds()
                if wait > 0:
                    # Asking now would be refused as too early and count as an error at Exact.
                    raise TransientError(
                        "refresh not allowed yet", code="too_early", retry_after=wait
                    )
            try:
                pair = await endpoint.refresh(row)
            except TransientError as exc:
                # Exact's clock says "too early" (TooEarlyToRefreshTokens): while the access
                # token it issued last is still valid, that token is the answer, not an error.
                if exc.code == "too_early" and _still_valid(row, now):
                    log.info("refresh_too_early_token_still_valid", connection_id=connection_id)
                    return row
                raise
            saved = await session.save(pair, now)
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
    policy: TokenPolicy,
    clock: Clock = _now,
) -> AccessToken:
    row = _usable(await store.get(request.connection_id), request.connection_id)
    if _fresh(row, clock(), policy.margin):
        return _reply(row)
    row = await _refresh_locked(
        request.connection_id,
        store=store,
        endpoint=endpoint,
        clock=clock,
        policy=policy,
        still_needed=lambda r: not _fresh(r, clock(), policy.margin),
    )
    return _reply(row)


async def refresh_token(
    request: TokenRefresh,
    *,
    store: ConnectionStore,
    endpoint: TokenEndpoint,
    policy: TokenPolicy,
    clock: Clock = _now,
) -> AccessToken:
    """Exact refused the token with ``request.fingerprint``: refresh unless someone already did,
    so a hundred callers reporting the same token cause one refresh."""
    row = await _refresh_locked(
        request.connection_id,
        store=store,
        endpoint=endpoint,
        clock=clock,
        policy=policy,
        still_needed=lambda r: r.access_fingerprint in (None, request.fingerprint),
    )
    return _reply(row)


async def keep_alive(
    connection_id: str,
    *,
    store: ConnectionStore,
    endpoint: TokenEndpoint,
    policy: TokenPolicy,
    clock: Clock = _now,
) -> bool:
    """Refresh ``connection_id`` if it has been idle past ``policy.keepalive_after``.

    Returns True when it refreshed. Connections waiting for a new consent are left alone.
    """

    def idle(row: Connection) -> bool:
        last = row.refreshed_at
        return last is None or (clock() - last).total_seconds() >= policy.keepalive_after

    row = await store.get(connection_id)
    if row is None or row.status != "active" or not idle(row):
        return False
    saved = await _refresh_locked(
        connection_id,
        store=store,
        endpoint=endpoint,
        clock=clock,
        policy=policy,
        still_needed=idle,
    )
    return saved.refreshed_at is not None and not idle(saved)


async def get_webhook_secret(request: WebhookSecretGet, *, store: ConnectionStore) -> WebhookSecret:
    row = await store.get(request.connection_id)
    if row is None:
        raise PermanentError(
            f"unknown connection {request.connection_id!r}", code="unknown_connection"
        )
    return WebhookSecret(
        connection_id=row.id, client_id=row.client_id, secret=SecretStr(row.webhook_secret)
    )


async def get_channel_credentials(
    request: ChannelCredentialsGet, *, store: ConnectionStore
) -> ChannelCredentials:
    credentials = await store.channel_credentials(request.connection_id)
    if credentials is None:
        raise PermanentError(
            f"unknown connection {request.connection_id!r}", code="unknown_connection"
        )
    return credentials


async def list_connections(request: ConnectionsList, *, store: ConnectionStore) -> Connections:
    """The connections reconciliation goes over: those that work, with their divisions (one
    waiting for a new consent has no token to read with)."""
    return Connections(
        connections=[
            ActiveConnection(connection_id=cid, divisions=divisions)
            for cid, divisions in await store.active()
        ]
    )


def routes(
    *, store: ConnectionStore, endpoint: TokenEndpoint, policy: TokenPolicy, clock: Clock
) -> RpcRoutes:
    """RPC routing key -> (request model, handler), ports bound here where the type checker
    sees them."""
    return {
        ConnectionsList.routing_key: rpc_route(
            ConnectionsList, partial(list_connections, store=store)
        ),
        ChannelCredentialsGet.routing_key: rpc_route(
            ChannelCredentialsGet, partial(get_channel_credentials, store=store)
        ),
        TokenGet.routing_key: rpc_route(
            TokenGet,
            partial(get_token, store=store, endpoint=endpoint, policy=policy, clock=clock),
        ),
        TokenRefresh.routing_key: rpc_route(
            TokenRefresh,
            partial(refresh_token, store=store, endpoint=endpoint, policy=policy, clock=clock),
        ),
        WebhookSecretGet.routing_key: rpc_route(
            WebhookSecretGet, partial(get_webhook_secret, store=store)
        ),
    }
