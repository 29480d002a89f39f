"""Forgetting one person (``privacy.forget``, see ``common.contracts.privacy``).

The enricher holds a person in three places: the contact cache (the Exact contact record, and
its account's entry, which is dropped so that the next read refetches what Exact now says),
the contact's channel preference, and the commands its notices keep for replays (their
recipient address and name are replaced by ``erased``: a replayed command meets the
dispatcher's claim and sends nothing). Exact itself stays the source: a person must also be
anonymised there (Exact's own contact anonymisation), or the next webhook reads them again.

``addresses_of`` gives ``mlc contacts forget`` the addresses the cache knows for a contact.
"""

from __future__ import annotations

import functools
from uuid import UUID

import asyncpg
import structlog

from common import amqp
from common.contracts import ForgetContact, Message, address_key
from common.logging import mask_text
from enricher.adapters.notices import PostgresNotices, PostgresPreferences
from enricher.audience import address_for
from enricher.ports import CustomerCache

__all__ = ["addresses_of", "forget", "routes"]

log = structlog.get_logger("enricher")

#: Erased placeholder for an address or name kept in a stored command.
ERASED = "erased"


async def addresses_of(db: asyncpg.Pool, connection_id: str, contact_id: UUID) -> list[str]:
    """Every email address and phone number (E.164) of the cached contact."""
    rows = await db.fetch(
        """SELECT record FROM enricher.contacts WHERE connection_id = $1 AND contact_id = $2""",
        connection_id,
        contact_id,
    )
    found: list[str] = []
    for row in rows:
        for channel in ("email", "sms", "voice"):
            address = address_for(row["record"], channel, "NL")
            if address and address not in found:
                found.append(address)
    return found


async def forget(
    event: ForgetContact,
    *,
    cache: CustomerCache,
    notices: PostgresNotices,
    preferences: PostgresPreferences,
) -> list[Message]:
    """Erase the person from the cache, the preferences and the stored commands."""
    dropped = erased = 0
    if event.contact_id is not None:
        dropped = await cache.forget_contact(event.connection_id, event.contact_id)
        await preferences.set(event.connection_id, event.contact_id, None)
    erased = await notices.erase_recipients(
        event.connection_id,
        event.contact_id,
        [address_key(a) for a in event.addresses],
        ERASED,
    )
    log.info(
        "contact_forgotten",
        request_id=str(event.request_id),
        accounts_dropped=dropped,
        commands_erased=erased,
        addresses=[mask_text(a) for a in event.addresses],
    )
    return []


def routes(
    cache: CustomerCache, notices: PostgresNotices, preferences: PostgresPreferences
) -> amqp.Routes:
    """The ``privacy.forget`` route, with its ports bound."""
    handler = functools.partial(forget, cache=cache, notices=notices, preferences=preferences)
    return {ForgetContact.routing_key: (ForgetContact, handler)}
