"""One POST to a provider, its transport failures classed by whether it may have been sent.

Neither Twilio's create endpoints nor SendGrid's mail/send take an idempotency key, so what
matters about a failed request is whether the provider could have acted on it: a refused or
timed-out connect, or no pooled connection in time, means the request never left
(TransientError: send again); any other failure, a read timeout or a connection dropped while
or after it was written, may have sent it (AmbiguousOutcome: settle by asking, never resend
blindly).
"""

from __future__ import annotations

from typing import Any

from common.errors import AmbiguousOutcome, TransientError
from dispatcher.adapters.http import HttpClient, NotSent, Reply, TransportFailure

__all__ = ["CREDENTIALS", "CREDENTIALS_RETRY_SECONDS", "post_once"]

#: The error code of a send refused for the account's credentials (Twilio 401/20003,
#: SendGrid 401/403): the whole connection's problem, fixed by a person.
CREDENTIALS = "credentials"
#: ... so asked again at the longest retry tier.
CREDENTIALS_RETRY_SECONDS = 1800.0


async def post_once(client: HttpClient, provider: str, path: str, **kwargs: Any) -> Reply:
    """POST once; raises TransientError or AmbiguousOutcome on a transport failure."""
    try:
        return await client.post(path, **kwargs)
    except NotSent as exc:
        raise TransientError(f"{provider} unreachable: {exc}") from exc
    except TransportFailure as exc:
        raise AmbiguousOutcome(f"no answer after the send left: {exc}") from exc
