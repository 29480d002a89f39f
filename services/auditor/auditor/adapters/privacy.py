"""Retention and erasure over schema ``audit``; each run is recorded in ``audit.privacy_log``.

- ``purge``: notifications whose last update is older than the cut-off go, with their
  attempts and provider statuses (and statuses of no notification received before the
  cut-off), and inbound messages received before it. The suppression history stays: it
  explains why an address gets nothing for as long as the dispatcher's list holds it, and it
  keeps only masked addresses.
- ``forget`` (``privacy.forget``): every notification of the request's connection whose
  recipient hash matches one of the addresses, or whose contact is the request's contact,
  keeps its place in the trail (document, dates, states) but loses its recipient, contact
  and text; the provider forms of its messages are emptied; inbound messages from those
  addresses are deleted. Once per request id. The connection ``*`` (INSTALL_SCOPE) means
  every connection: an operator erasing a person the whole install knows. Another
  connection's notifications to the same address are that company's records and stay.

Neither bumps ``updated_at``: an erased row ages out on its original schedule.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from auditor.personal import ERASED, PersonalData
from common.contracts import INSTALL_SCOPE, ForgetContact, normalise_address
from common.logging import mask_text

__all__ = ["forget", "purge"]


def _rows(status: str) -> int:
    """The row count of a command tag (``DELETE 3``, ``UPDATE 0``)."""
    return int(status.rsplit(" ", 1)[-1])


async def purge(
    db: asyncpg.Connection, *, older_than: timedelta, requested_by: str, dry_run: bool = False
) -> dict[str, Any]:
    """Delete everything older than ``older_than`` and record it. A dry run deletes and rolls
    back, so the counts it answers are exactly what a real run would delete."""
    cutoff = datetime.now(UTC) - older_than
    transaction = db.transaction()
    await transaction.start()
    try:
        counts = await _delete_older(db, cutoff)
        if not dry_run:
            await db.execute(
                """INSERT INTO audit.privacy_log (action, older_than, requested_by, counts)
                   VALUES ('purge', $1, $2, $3)""",
                cutoff,
                mask_text(requested_by),
                counts,
            )
    except BaseException:
        await transaction.rollback()
        raise
    await (transaction.rollback() if dry_run else transaction.commit())
    return {"cutoff": cutoff, "counts": counts, "dry_run": dry_run}


async def _delete_older(db: asyncpg.Connection, cutoff: datetime) -> dict[str, int]:
    gone = await db.fetch(
        """DELETE FROM audit.notifications WHERE updated_at < $1
           RETURNING notification_id, provider_id""",
        cutoff,
    )
    ids = [r["notification_id"] for r in gone]
    providers = [r["provider_id"] for r in gone if r["provider_id"]]
    attempts = await db.execute(
        "DELETE FROM audit.attempts WHERE notification_id = ANY($1::uuid[])", ids
    )
    # A message's statuses go with its notification; a status no notification claims goes
    # once it is old (a callback for a message this trail never heard of).
    events = await db.execute(
        """DELETE FROM audit.status_events e
           WHERE (e.provider_id = ANY($1::text[]) OR e.received_at < $2)
             AND NOT EXISTS (SELECT 1 FROM audit.notifications n
                             WHERE n.provider_id = e.provider_id)""",
        providers,
        cutoff,
    )
    statuses = await db.execute(
        """DELETE FROM audit.statuses s
           WHERE (s.provider_id = ANY($1::text[]) OR s.updated_at < $2)
             AND NOT EXISTS (SELECT 1 FROM audit.notifications n
                             WHERE n.provider_id = s.provider_id)""",
        providers,
        cutoff,
    )
    inbound = await db.execute("DELETE FROM audit.inbound WHERE received_at < $1", cutoff)
    return {
        "notifications": len(gone),
        "attempts": _rows(attempts),
        "status_events": _rows(events),
        "statuses": _rows(statuses),
        "inbound": _rows(inbound),
    }


async def forget(
    db: asyncpg.Connection, data: PersonalData, event: ForgetContact
) -> dict[str, int] | None:
    """Erase one person and record the request (masked), in one transaction. Returns the
    counts, or None when this request id was handled already."""
    hashes = sorted({h for address in event.addresses for h in data.hashes(address)})
    async with db.transaction():
        logged = await db.fetchval(
            """INSERT INTO audit.privacy_log (action, request_id, connection_id, contact_id,
                   addresses_masked, requested_by, requested_at)
               VALUES ('forget', $1, $2, $3, $4, $5, $6)
               ON CONFLICT (request_id) DO NOTHING RETURNING id""",
            event.request_id,
            event.connection_id,
            event.contact_id,
            [data.mask(normalise_address(a)) for a in event.addresses],
            mask_text(event.requested_by),
            event.requested_at,
        )
        if logged is None:
            return None
        counts = await _erase(db, event, hashes)
        await db.execute("UPDATE audit.privacy_log SET counts = $2 WHERE id = $1", logged, counts)
    return counts


async def _erase(db: asyncpg.Connection, event: ForgetContact, hashes: list[str]) -> dict[str, int]:
    erased = await db.fetch(
        """UPDATE audit.notifications SET recipient_hash = NULL, recipient_masked = $4,
               contact_id = NULL, content_sealed = NULL, erased_at = now()
           WHERE ($1 = $5 OR connection_id = $1)
             AND (recipient_hash = ANY($2::text[])
                  OR ($3::uuid IS NOT NULL AND contact_id = $3))
           RETURNING provider_id""",
        event.connection_id,
        hashes,
        event.contact_id,
        ERASED,
        INSTALL_SCOPE,
    )
    providers = [r["provider_id"] for r in erased if r["provider_id"]]
    forms = await db.execute(
        """UPDATE audit.status_events SET raw = '{}'::jsonb
           WHERE provider_id = ANY($1::text[]) AND raw <> '{}'::jsonb""",
        providers,
    )
    # Texts to the install's shared number (no connection) may come from any company's
    # customer: the person's own are deleted whichever company asks.
    inbound = await db.execute(
        """DELETE FROM audit.inbound WHERE sender_hash = ANY($1::text[])
           AND ($2 = $3 OR connection_id = $2 OR connection_id IS NULL)""",
        hashes,
        event.connection_id,
        INSTALL_SCOPE,
    )
    return {
        "notifications": len(erased),
        "status_forms": _rows(forms),
        "inbound": _rows(inbound),
    }
