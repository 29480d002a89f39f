"""Erasure of one person: ``mlc contacts forget`` asks every service to forget a contact.

The request names the Exact contact and the addresses it had (its email addresses and phone
numbers, as the enricher's cache and the operator know them). Each service that keeps personal
data consumes ``privacy.forget`` and erases what it holds about those addresses or that
contact, then records that it did: the enricher its contact cache and preferences, the
dispatcher the recipients kept in its claims, the auditor the recipients, bodies and raw
callbacks of the trail (the request itself is kept in the trail, with masked addresses).

The suppression list is kept: it holds only address keys, and forgetting an opt-out would
let the next invoice reach someone who asked not to be contacted.

The addresses travel in clear in this one message (a durable queue holds it until each
service has handled it, seconds in normal operation): the services need them to find what to
erase.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar
from uuid import UUID

from common.contracts.base import Event, stable_id

__all__ = ["ForgetContact"]


class ForgetContact(Event):
    """Forget one person. Routing key ``privacy.forget``; one fact per ``request_id``."""

    routing_key: ClassVar[str] = "privacy.forget"
    request_id: UUID
    connection_id: str
    contact_id: UUID | None = None
    #: Phone numbers (E.164) and email addresses of the person.
    addresses: list[str]
    requested_by: str
    requested_at: datetime

    def message_id(self) -> str:
        return str(stable_id(self.routing_key, self.request_id))
