"""The error tree every handler and adapter raises into. The consumer loop maps it to outcomes.

::

    MlcError
    ├── PermanentError      retrying cannot help: Twilio 21211/21614/21610, unknown 4xx, bad data
    │   └── InvalidMessage  could not decode or validate      -> .dlq, x-error-class: invalid
    ├── TransientError      may work later: 429, 5xx, connection refused; carries retry_after
    └── AmbiguousOutcome    a non-idempotent call may have taken effect; never blindly retried

Adapters classify vendor answers into these; handlers never look at HTTP status codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["AmbiguousOutcome", "InvalidMessage", "MlcError", "PermanentError", "TransientError"]


class MlcError(Exception):
    """Base of every error ml-connector raises on purpose."""

    #: Short, fixed label for logs, metrics and the ``x-error-class`` header.
    error_class = "error"

    def __init__(
        self, message: str, *, code: str | int | None = None, facts: Sequence[Any] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        #: Messages to publish before the delivery is parked (e.g. NotificationFailed), so
        #: the audit trail learns of a failure that also needs an operator. On a transient
        #: error they go out only if its retries are used up and the delivery is parked.
        self.facts = tuple(facts)


class PermanentError(MlcError):
    """Retrying cannot help: the message goes to its queue's ``.dlq``."""

    error_class = "permanent"


class InvalidMessage(PermanentError):
    """A message that cannot be decoded or validated against its contract."""

    error_class = "invalid"


class TransientError(MlcError):
    """May work later. ``retry_after`` (seconds) is the vendor's hint, if it gave one."""

    error_class = "transient"

    def __init__(
        self,
        message: str,
        *,
        code: str | int | None = None,
        retry_after: float | None = None,
        indefinite: bool = False,
        facts: Sequence[Any] = (),
    ) -> None:
        super().__init__(message, code=code, facts=facts)
        self.retry_after = retry_after
        #: Wait as long as it takes (e.g. a connection waiting for a new consent): the message
        #: keeps cycling through the longest tier instead of going to the DLQ.
        self.indefinite = indefinite


class AmbiguousOutcome(MlcError):
    """A non-idempotent call (a Twilio send) may or may not have taken effect."""

    error_class = "ambiguous"
