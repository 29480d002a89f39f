"""Exact's OAuth2 token rules, without HTTP (``token_endpoint`` serves them).

A *chain* is one consent: it starts with the configured refresh token or an authorization
code, and every refresh replaces its refresh token. Rules (reference section 2)::

    access token          lives 600 s ("expires_in": "600")
    refresh               allowed from 570 s after the chain last issued a token, else
                          400 access_denied + Reason: TooEarlyToRefreshTokens
    refresh token         single use: the next refresh replaces it; presenting a replaced one
                          -> 401 unauthorized_client "Old refresh token used." and the chain
                          breaks (its current tokens die too: only a new consent helps)
    unused refresh token  expires 30 days after it was issued -> 400 invalid_request
    authorization code    single use, 3 minutes
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sim_exact.clock import Clock

__all__ = [
    "ACCESS_TOKEN_SECONDS",
    "CODE_SECONDS",
    "REFRESH_NOT_BEFORE_SECONDS",
    "REFRESH_TOKEN_SECONDS",
    "Chain",
    "OAuth",
    "TokenError",
    "TokenPair",
]

ACCESS_TOKEN_SECONDS = 600
#: Exact refuses a refresh sooner than this after the previous issue (rule of 1 July 2021).
REFRESH_NOT_BEFORE_SECONDS = 570
REFRESH_TOKEN_SECONDS = 30 * 24 * 3600
CODE_SECONDS = 180


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenError(Exception):
    """A refused token request: HTTP status, OAuth ``error`` and description, extra headers."""

    def __init__(
        self,
        status: int,
        error: str,
        description: str | None = None,
        *,
        outcome: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(description or error)
        self.status = status
        self.error = error
        self.description = description
        #: Metric label for this refusal.
        self.outcome = outcome or error
        self.headers = dict(headers or {})

    def body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int = ACCESS_TOKEN_SECONDS

    def body(self) -> dict[str, str]:
        """The token response; Exact sends ``expires_in`` as a string."""
        return {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": str(self.expires_in),
            "refresh_token": self.refresh_token,
        }


@dataclass
class Chain:
    """One consent and its token history."""

    id: str
    client_id: str
    origin: str
    refresh_token: str
    refresh_issued_at: float
    last_issued_at: float
    access_tokens: dict[str, float] = field(default_factory=dict)
    refreshes: int = 0
    too_early: int = 0
    old_token_reuse: int = 0
    broken: bool = False
    expired: bool = False

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "origin": self.origin,
            "refreshes": self.refreshes,
            "too_early": self.too_early,
            "old_token_reuse": self.old_token_reuse,
            "broken": self.broken,
            "expired": self.expired,
            "last_issued_at": _stamp(self.last_issued_at),
            "refresh_token_expires_at": _stamp(self.refresh_issued_at + REFRESH_TOKEN_SECONDS),
        }


@dataclass(frozen=True)
class _Code:
    client_id: str
    redirect_uri: str
    expires_at: float


class OAuth:
    """Token chains for one app (client id and secret)."""

    def __init__(
        self, clock: Clock, *, client_id: str, client_secret: str, initial_refresh_token: str
    ) -> None:
        self._clock = clock
        self.client_id = client_id
        self._client_secret = client_secret
        self._initial = initial_refresh_token
        self._chains: list[Chain] = []
        self._by_refresh: dict[str, Chain] = {}
        self._old_refresh: dict[str, Chain] = {}
        self._by_access: dict[str, Chain] = {}
        self._codes: dict[str, _Code] = {}
        self.reset()

    def reset(self) -> None:
        """Forget every chain and start again from the configured refresh token."""
        for index in (self._by_refresh, self._old_refresh, self._by_access, self._codes):
            index.clear()
        self._chains.clear()
        now = self._clock.now()
        # Issued "long enough ago" that the first refresh is allowed.
        self._add_chain(
            self._initial, origin="configured", last_issued_at=now - ACCESS_TOKEN_SECONDS
        )

    def check_client(self, client_id: str | None, client_secret: str | None) -> None:
        if client_id != self.client_id or not secrets.compare_digest(
            (client_secret or "").encode(), self._client_secret.encode()
        ):
            raise TokenError(400, "invalid_client", outcome="invalid_client")

    def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate ``refresh_token``; raises ``TokenError`` per the rules in the docstring."""
        now = self._clock.now()
        old = self._old_refresh.get(refresh_token)
        if old is not None:
            old.old_token_reuse += 1
            self._break(old)
            raise TokenError(
                401, "unauthorized_client", "Old refresh token used.", outcome="old_token_used"
            )
        chain = self._by_refresh.get(refresh_token)
        if chain is None or chain.broken:
            raise TokenError(400, "invalid_grant", "The refresh token is invalid.")
        expires_at = chain.refresh_issued_at + REFRESH_TOKEN_SECONDS
        if now >= expires_at:
            chain.expired = True
            raise TokenError(
                400,
                "invalid_request",
                f"The refresh token expired at {_stamp(expires_at)} and it is now {_stamp(now)}",
                outcome="expired",
            )
        allowed_at = chain.last_issued_at + REFRESH_NOT_BEFORE_SECONDS
        if now < allowed_at:
            chain.too_early += 1
            raise TokenError(
                400,
                "access_denied",
                "Rate limit exceeded: access_token not expired",
                outcome="too_early",
                headers={
                    "Reason": "TooEarlyToRefreshTokens: the access token was issued at "
                    f"{_stamp(chain.last_issued_at)}; refresh from {_stamp(allowed_at)}"
                },
            )
        del self._by_refresh[refresh_token]
        self._old_refresh[refresh_token] = chain
        chain.refreshes += 1
        return self._issue(chain, now)

    def authorize(self, client_id: str, redirect_uri: str) -> str:
        """Consent given: a single-use code for ``redirect_uri``."""
        if client_id != self.client_id:
            raise TokenError(400, "invalid_client", outcome="invalid_client")
        code = secrets.token_urlsafe(24)
        self._codes[code] = _Code(client_id, redirect_uri, self._clock.now() + CODE_SECONDS)
        return code

    def exchange(self, code: str, redirect_uri: str | None) -> TokenPair:
        """Trade an authorization code for the first pair of a new chain."""
        grant = self._codes.pop(code, None)
        if grant is None or self._clock.now() >= grant.expires_at:
            raise TokenError(400, "invalid_grant", "The authorization code is invalid or expired.")
        if redirect_uri != grant.redirect_uri:
            raise TokenError(400, "invalid_grant", "The redirect_uri does not match.")
        now = self._clock.now()
        chain = self._add_chain("", origin="authorization_code", last_issued_at=now)
        return self._issue(chain, now)

    def authenticate(self, access_token: str) -> Chain | None:
        """The chain a live access token belongs to, or None (unknown, expired, broken)."""
        chain = self._by_access.get(access_token)
        if chain is None or chain.broken:
            return None
        if self._clock.now() >= chain.access_tokens.get(access_token, 0):
            return None
        return chain

    def stats(self) -> list[dict[str, Any]]:
        return [chain.stats() for chain in self._chains]

    def _add_chain(self, refresh_token: str, *, origin: str, last_issued_at: float) -> Chain:
        chain = Chain(
            id=f"chain-{len(self._chains) + 1}",
            client_id=self.client_id,
            origin=origin,
            refresh_token=refresh_token,
            refresh_issued_at=self._clock.now(),
            last_issued_at=last_issued_at,
        )
        self._chains.append(chain)
        if refresh_token:
            self._by_refresh[refresh_token] = chain
        return chain

    def _issue(self, chain: Chain, now: float) -> TokenPair:
        access = secrets.token_urlsafe(32)
        refresh = secrets.token_urlsafe(32)
        chain.access_tokens = {
            token: expiry for token, expiry in chain.access_tokens.items() if expiry > now
        }
        chain.access_tokens[access] = now + ACCESS_TOKEN_SECONDS
        chain.refresh_token = refresh
        chain.refresh_issued_at = now
        chain.last_issued_at = now
        self._by_refresh[refresh] = chain
        self._by_access[access] = chain
        return TokenPair(access, refresh)

    def _break(self, chain: Chain) -> None:
        chain.broken = True
        chain.access_tokens.clear()
        self._by_refresh.pop(chain.refresh_token, None)
