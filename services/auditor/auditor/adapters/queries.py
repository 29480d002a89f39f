"""TrailQueries: what operators read from schema ``audit`` (one document's trail, the
failures that need attention, one notification, the suppression history). ``PostgresTrail``
writes and inherits these.

A notification is read with its recipient masked (``recipient``: the only form kept) and
without its text; ``reveal`` adds the text, opened with the auditor's data key, and the Exact
contact. The recipient's hash is never read out: it stands for an address to whoever holds
the key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from auditor.personal import ERASED, PersonalData
from common.contracts import INSTALL_SCOPE
from common.logging import mask_error, mask_text

__all__ = ["NOTIFICATION_COLUMNS", "SUPPRESSION_COLUMNS", "TrailQueries"]

#: What any reader gets of a notification (``n``): everything but the hash and the sealed
#: text; the masked recipient under the name ``recipient``.
NOTIFICATION_COLUMNS = """n.notification_id, n.idempotency_key, n.channel, n.connection_id,
    n.division, n.entity, n.document_id, n.document_number, n.fact,
    n.recipient_masked AS recipient, n.template, n.state, n.provider_id, n.requested_at,
    n.updated_at, n.failure_reason, n.error_code, n.last_attempt, n.state_rank, n.retry_of,
    n.status_checked_at, n.status_checks, n.erased_at"""

#: What a reveal adds (opened or dropped by ``TrailQueries._shown``).
_REVEALABLE = "n.content_sealed, n.contact_id"

#: What an operator sees of a suppression change: the masked address, never its key (a hash of
#: a phone number is as good as the number to anyone who can enumerate numbers).
SUPPRESSION_COLUMNS = """occurred_at, action, connection_id, channel, address_masked, reason,
    source, notification_id, requested_by, note"""


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, UUID) else v) for k, v in dict(row).items()}


def _change(row: asyncpg.Record) -> dict[str, Any]:
    """A suppression change as any reader gets it: the free-text fields masked once more (an
    operator's note or name may hold a number or an address; the open trail shows them)."""
    change = _plain(row)
    for field in ("address_masked", "requested_by", "note"):
        if change.get(field):
            change[field] = mask_text(str(change[field]))
    return change


def _attempt(row: asyncpg.Record) -> dict[str, Any]:
    """An attempt as any reader gets it: the provider's error masked once more, for rows kept
    before ``mask_error`` also masked numbers quoted without ``+``."""
    attempt = dict(row)
    if attempt.get("error"):
        attempt["error"] = mask_error(str(attempt["error"]))
    return attempt


class TrailQueries:
    def __init__(self, db: asyncpg.Pool, data: PersonalData) -> None:
        self._db = db
        self._data = data

    def _shown(self, row: asyncpg.Record, *, reveal: bool) -> dict[str, Any]:
        """A notification row as a reader gets it: with its text and contact when
        ``reveal``, without them otherwise."""
        item = _plain(row)
        sealed = item.pop("content_sealed", None)
        contact = item.pop("contact_id", None)
        if reveal:
            item["content"] = ERASED if item.get("erased_at") else self._data.open(sealed)
            item["contact_id"] = contact
        return item

    async def failures(
        self, *, since: datetime | None = None, reason: str | None = None
    ) -> list[dict[str, Any]]:
        """Notifications that need an operator (failed or skipped), newest first."""
        rows = await self._db.fetch(
            """SELECT notification_id, idempotency_key, connection_id, division, entity,
                      document_id, document_number, fact, channel,
                      recipient_masked AS recipient, state, failure_reason,
                      error_code, last_attempt, updated_at
               FROM audit.notifications
               WHERE state IN ('failed', 'skipped')
                 AND ($1::timestamptz IS NULL OR updated_at >= $1)
                 AND ($2::text IS NULL OR failure_reason = $2)
               ORDER BY updated_at DESC LIMIT 1000""",
            since,
            reason,
        )
        return [_plain(r) for r in rows]

    async def notification(
        self, notification_id: UUID, *, reveal: bool = False
    ) -> dict[str, Any] | None:
        row = await self._db.fetchrow(
            f"""SELECT {NOTIFICATION_COLUMNS}, {_REVEALABLE} FROM audit.notifications n
                WHERE notification_id = $1""",  # noqa: S608 - constant columns
            notification_id,
        )
        return None if row is None else self._shown(row, reveal=reveal)

    async def document_trail(
        self,
        *,
        number: str | None = None,
        document_id: UUID | None = None,
        connection_id: str | None = None,
        reveal: bool = False,
    ) -> list[dict[str, Any]]:
        """Every notification about one document, with its attempts and statuses (and its
        text when ``reveal``)."""
        rows = await self._db.fetch(
            f"""SELECT {NOTIFICATION_COLUMNS}, {_REVEALABLE}, s.status AS delivery_status,
                      s.error_code AS delivery_error_code
               FROM audit.notifications n LEFT JOIN audit.statuses s USING (provider_id)
               WHERE ($1::text IS NULL OR n.document_number = $1)
                 AND ($2::uuid IS NULL OR n.document_id = $2)
                 AND ($3::text IS NULL OR n.connection_id = $3)
                 AND ($1::text IS NOT NULL OR $2::uuid IS NOT NULL)
               ORDER BY n.requested_at NULLS LAST""",  # noqa: S608 - constant columns
            number,
            document_id,
            connection_id,
        )
        trail = []
        for row in rows:
            item = self._shown(row, reveal=reveal)
            item["attempts"] = [
                _attempt(a)
                for a in await self._db.fetch(
                    """SELECT outcome, attempt, provider_id, error_class, error_code, error,
                          retry_at, requested_by, recorded_at
                   FROM audit.attempts WHERE notification_id = $1
                   ORDER BY id""",
                    row["notification_id"],
                )
            ]
            item["status_history"] = [
                dict(e)
                for e in await self._db.fetch(
                    """SELECT status, error_code, received_at, repeats FROM audit.status_events
                   WHERE provider_id = $1 ORDER BY received_at, id""",
                    row["provider_id"],
                )
            ]
            item["suppressions"] = await self._learnt_from(row["notification_id"])
            trail.append(item)
        return trail

    async def _learnt_from(self, notification_id: UUID) -> list[dict[str, Any]]:
        """The suppression changes a notification's outcome taught (a bounce, a STOP reply),
        so its trail says why later sends to that address are skipped."""
        rows = await self._db.fetch(
            f"""SELECT {SUPPRESSION_COLUMNS} FROM audit.suppression_events
                WHERE notification_id = $1 ORDER BY occurred_at, id""",  # noqa: S608 - constant
            notification_id,
        )
        return [_change(r) for r in rows]

    async def suppressions(
        self, *, connection_id: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """The suppression history, newest first. A connection's history includes the
        install-wide changes (connection ``*``): they hold for it too."""
        rows = await self._db.fetch(
            f"""SELECT {SUPPRESSION_COLUMNS} FROM audit.suppression_events
                WHERE $1::text IS NULL OR connection_id = $1 OR connection_id = $2
                ORDER BY occurred_at DESC, id DESC LIMIT $3""",  # noqa: S608 - constant
            connection_id,
            INSTALL_SCOPE,
            limit,
        )
        return [_change(r) for r in rows]
