"""One POST to a provider, its transport failures classed by whether it may have been sent.

Neither Twilio's create endpoints nor SendGrid's mail/send take an idempotency key, so what
matters about a failed request is whether the provider could have acted on it: a connect
error, a pool timeout or an error while writing means the request never arrived whole
(TransientError: send again); a read timeout or a dropped connection after it was written may
have sent it (AmbiguousOutcome: settle by asking, never resend blindly).
"""

from __future__ import annotations

from typing import Any

import httpx

from common.errors import AmbiguousOutcome, TransientError

__all__ = ["CREDENTIALS", "CREDENTIALS_RETRY_SECONDS", "NOT_SENT", "post_once"]

#: The error code of a send refused for the account's credentials (Twilio 401/20003,
#: SendGrid 401/403): the whole connection's problem, fixed by a person.
CREDENTIALS = "credentials"
#: ... so asked again at the longest retry tier.
CREDENTIALS_RETRY_SECONDS = 1800.0

#: The request was not written whole, so the provider cannot have acted on it.
NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
)


async def post_once(
    client: httpx.AsyncClient, provider: str, path: str, **kwargs: Any
) -> httpx.Response:
    """POST once; raises TransientError or AmbiguousOutcome on a transport failure."""
    try:
        return await client.post(path, **kwargs)
    except NOT_SENT as exc:
        raise TransientError(f"{provider} unreachable: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise AmbiguousOutcome(f"no answer after the send left: {type(exc).__name__}") from exc
