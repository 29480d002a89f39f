"""PostgresNotices and PostgresPreferences over schema ``enricher`` (``003_notices.sql``).

A notice row is the enricher's decision for one (document, rule). Due rows are taken with
``FOR UPDATE SKIP LOCKED`` inside one transaction that lasts until each is settled, so replicas
never fire the same row, and a crash before the commit leaves it pending: the next pass fires
it again with the same idempotency key, which the dispatcher's claim turns into one send.

A suppressed address is matched in SQL by its key (``common.contracts.address_key``: SHA-256 of
the normalised address) over the commands already stored, so neither the address nor the
table's rows travel to Python; the database's ``lower`` follows its ctype (``C.UTF-8`` and the
like fold non-ASCII letters as Python does).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from common.contracts import Channel, Message, NotificationSkipped, SendNotification
from common.contracts.suppressions import address_key_sql
from common.groupcommit import GroupCommit, Merged, in_transaction, item, json_function
from common.groupread import GroupRead
from enricher.ports import AddressedNotice, Notice, NoticeKey

__all__ = ["DueBatch", "Notice", "NoticeKey", "PostgresNotices", "PostgresPreferences"]

#: A document's identity: connection, division, entity, document id.
_Document = tuple[str, int, str, UUID]

_TYPES: dict[str, type[Message]] = {
    "SendNotification": SendNotification,
    "NotificationSkipped": NotificationSkipped,
}


def _notice(row: asyncpg.Record) -> Notice:
    message = None
    if row["message"] is not None and row["message_type"] in _TYPES:
        message = _TYPES[row["message_type"]].model_validate(row["message"])
    return Notice(
        _key(row), row["state"], row["due_at"], row["document_number"], message, row["detail"]
    )


def _message(message: Message | None) -> tuple[str | None, Any]:
    if message is None:
        return None, None
    return type(message).__name__, message.model_dump(mode="json")


#: Decisions of concurrent deliveries, one round trip for all (migration 006).
_record_many = json_function("enricher.record_many")


def _notice_item(
    key: NoticeKey,
    number: str | None,
    state: str,
    due_at: datetime,
    message: Message | None,
    detail: str | None,
) -> dict[str, Any]:
    """A decision as an item of ``enricher.record_many``."""
    kind, body = _message(message)
    return item(
        "notice",
        key.connection_id,
        key.division,
        key.entity,
        key.document_id,
        key.rule,
        number,
        state,
        due_at,
        kind,
        body,
        detail,
    )


#: A stored command's recipient address, trimmed (``t.address``).
_RECIPIENT = """CROSS JOIN LATERAL (SELECT btrim(n.message #>> '{recipient,address}',
                                     E' \\t\\n\\r\\f\\x0b') AS address) t"""

#: The pending notices of the documents whose stored commands went to one address on one
#: channel.
_PENDING_CHAINS_TO = f"""
    SELECT p.connection_id, p.division, p.entity, p.document_id, p.rule,
           array_agg(DISTINCT n.rule ORDER BY n.rule) AS sent_by
    FROM enricher.notices n
    {_RECIPIENT}
    JOIN enricher.notices p
      ON p.connection_id = n.connection_id AND p.division = n.division
     AND p.entity = n.entity AND p.document_id = n.document_id AND p.state = 'pending'
    WHERE ($1::text IS NULL OR n.connection_id = $1)
      AND n.message_type = 'SendNotification' AND n.message ->> 'channel' = $2
      AND {address_key_sql("t.address")} = $3
    GROUP BY p.connection_id, p.division, p.entity, p.document_id, p.rule"""  # noqa: S608

#: (Both queries are built from constants only: S608 does not apply.)
#: Replace the recipient of the stored commands to a contact or to one of the address keys.
_ERASE_RECIPIENTS = f"""
    UPDATE enricher.notices m SET message = jsonb_set(jsonb_set(m.message,
               '{{recipient,address}}', to_jsonb($4::text)), '{{recipient,name}}', 'null'),
           updated_at = now()
    FROM enricher.notices n
    {_RECIPIENT}
    WHERE m.connection_id = n.connection_id AND m.division = n.division
      AND m.entity = n.entity AND m.document_id = n.document_id AND m.rule = n.rule
      AND n.connection_id = $1 AND n.message_type = 'SendNotification'
      AND t.address <> $4
      AND (n.message #>> '{{recipient,contact_id}}' = $2
           OR {address_key_sql("t.address")} = ANY($3::text[]))"""  # noqa: S608

_CANCEL_PENDING = """
    UPDATE enricher.notices n SET state = 'cancelled', detail = $6, updated_at = now()
    FROM unnest($1::text[], $2::integer[], $3::text[], $4::uuid[], $5::text[])
         AS k(connection_id, division, entity, document_id, rule)
    WHERE n.connection_id = k.connection_id AND n.division = k.division
      AND n.entity = k.entity AND n.document_id = k.document_id AND n.rule = k.rule
      AND n.state = 'pending'
    RETURNING n.connection_id, n.division, n.entity, n.document_id, n.rule"""


def _key(row: asyncpg.Record) -> NoticeKey:
    return NoticeKey(
        row["connection_id"], row["division"], row["entity"], row["document_id"], row["rule"]
    )


class DueBatch:
    """Pending notices due now, locked until the batch's transaction ends."""

    def __init__(self, db: asyncpg.Connection, notices: list[Notice]) -> None:
        self._db = db
        self.notices = notices

    async def settle(
        self,
        notice: Notice,
        state: str,
        *,
        due_at: datetime | None = None,
        message: Message | None = None,
        detail: str | None = None,
    ) -> None:
        item_ = _notice_item(
            notice.key, notice.document_number, state, due_at or notice.due_at, message, detail
        )
        await _record_many(self._db, [item_])


class PostgresNotices:
    def __init__(self, db: asyncpg.Pool, *, group: GroupCommit | None = None) -> None:
        """With ``group`` the decisions of concurrent deliveries are stored in shared
        transactions (``record`` still returns only after its own commit)."""
        self._db = db
        self._group = group
        # the reads of concurrent deliveries, one query for those that wait together
        self._documents: GroupRead[_Document, dict[str, Notice]] = GroupRead(self._of_documents)

    async def get(self, key: NoticeKey) -> Notice | None:
        row = await self._db.fetchrow(
            """SELECT * FROM enricher.notices WHERE connection_id = $1 AND division = $2
               AND entity = $3 AND document_id = $4 AND rule = $5""",
            key.connection_id,
            key.division,
            key.entity,
            key.document_id,
            key.rule,
        )
        return _notice(row) if row else None

    async def of_document(
        self, connection_id: str, division: int, entity: str, document_id: UUID
    ) -> dict[str, Notice]:
        """The document's decisions by rule."""
        found = await self._documents.get((connection_id, division, entity, document_id))
        return found or {}

    async def _of_documents(self, keys: list[_Document]) -> dict[_Document, dict[str, Notice]]:
        rows = await self._db.fetch(
            """SELECT n.* FROM unnest($1::text[], $2::int[], $3::text[], $4::uuid[])
                   AS k(connection_id, division, entity, document_id)
               JOIN enricher.notices n USING (connection_id, division, entity, document_id)""",
            *(list(column) for column in zip(*keys, strict=True)),
        )
        found: dict[_Document, dict[str, Notice]] = {}
        for row in rows:
            key = (row["connection_id"], row["division"], row["entity"], row["document_id"])
            found.setdefault(key, {})[row["rule"]] = _notice(row)
        return found

    async def record(
        self,
        key: NoticeKey,
        state: str,
        *,
        due_at: datetime,
        number: str | None,
        message: Message | None = None,
        detail: str | None = None,
    ) -> None:
        """Store the decision (never over a cancelled one)."""
        item_ = _notice_item(key, number, state, due_at, message, detail)
        # enricher.record_many answers every item in its one call (migration 007)
        unit: Merged[Any, Any] = Merged(_record_many, item_, single_statement=True)
        await in_transaction(self._db, unit, self._group)

    async def cancel_invoice(
        self,
        connection_id: str,
        division: int,
        *,
        entities: Sequence[str],
        document_id: UUID | None,
        number: str | None,
        reason: str,
    ) -> int:
        """End the pending notices of an invoice (by id or number); returns how many."""
        result = await self._db.execute(
            """UPDATE enricher.notices SET state = 'cancelled', detail = $6, updated_at = now()
               WHERE connection_id = $1 AND division = $2 AND entity = ANY($3::text[])
                 AND state = 'pending'
                 AND (document_id = $4
                      OR (document_number IS NOT NULL AND document_number = $5))""",
            connection_id,
            division,
            list(entities),
            document_id,
            number,
            reason,
        )
        return int(result.split()[-1])

    async def cancel_document(
        self, connection_id: str, division: int, entity: str, document_id: UUID, reason: str
    ) -> int:
        return await self.cancel_invoice(
            connection_id,
            division,
            entities=[entity],
            document_id=document_id,
            number=None,
            reason=reason,
        )

    async def pending_chains_to(
        self, connection_id: str | None, channel: Channel, address_key: str
    ) -> list[AddressedNotice]:
        """The pending notices of the documents that sent on ``channel`` to the address keyed
        ``address_key``, of ``connection_id`` (None: every connection); the key is computed
        in the database, so only the matching documents' pending rows come back."""
        rows = await self._db.fetch(_PENDING_CHAINS_TO, connection_id, channel, address_key)
        return [AddressedNotice(_key(row), tuple(row["sent_by"])) for row in rows]

    async def erase_recipients(
        self, connection_id: str, contact_id: UUID | None, keys: Sequence[str], placeholder: str
    ) -> int:
        """Replace the recipient address (and name) of the stored commands that went to the
        contact or to one of the address keys with ``placeholder``; returns how many."""
        status = await self._db.execute(
            _ERASE_RECIPIENTS,
            connection_id,
            None if contact_id is None else str(contact_id),
            list(keys),
            placeholder,
        )
        return int(status.rsplit(" ", 1)[-1])

    async def cancel_pending(self, keys: Sequence[NoticeKey], detail: str) -> list[NoticeKey]:
        """Cancel those of ``keys`` still pending (one fired meanwhile stays as it is);
        returns the ones cancelled, so a repeated call cancels and counts nothing."""
        if not keys:
            return []
        rows = await self._db.fetch(
            _CANCEL_PENDING,
            [k.connection_id for k in keys],
            [k.division for k in keys],
            [k.entity for k in keys],
            [k.document_id for k in keys],
            [k.rule for k in keys],
            detail,
        )
        return [_key(row) for row in rows]

    @asynccontextmanager
    async def due(self, now: datetime, *, limit: int = 50) -> AsyncIterator[DueBatch]:
        """The pending notices due at ``now``, oldest first, locked for this batch."""
        async with self._db.acquire() as db, db.transaction():
            rows = await db.fetch(
                """SELECT * FROM enricher.notices WHERE state = 'pending' AND due_at <= $1
                   ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED""",
                now,
                limit,
            )
            yield DueBatch(db, [_notice(row) for row in rows])

    async def states(self, connection_id: str, entity: str, document_id: UUID) -> dict[str, str]:
        """rule -> state for one document (operators and tests)."""
        rows = await self._db.fetch(
            """SELECT rule, state FROM enricher.notices
               WHERE connection_id = $1 AND entity = $2 AND document_id = $3""",
            connection_id,
            entity,
            document_id,
        )
        return {row["rule"]: row["state"] for row in rows}


class PostgresPreferences:
    """A contact's own channel preference, per connection."""

    def __init__(self, db: asyncpg.Pool) -> None:
        self._db = db
        # the reads of concurrent deliveries, one query for those that wait together
        self._reads: GroupRead[tuple[str, UUID], Channel] = GroupRead(self._get)

    async def get_many(self, connection_id: str, contact_ids: Sequence[UUID]) -> dict[str, Channel]:
        found = await asyncio.gather(*(self._reads.get((connection_id, c)) for c in contact_ids))
        return {str(c): ch for c, ch in zip(contact_ids, found, strict=True) if ch is not None}

    async def _get(self, keys: list[tuple[str, UUID]]) -> dict[tuple[str, UUID], Channel]:
        rows = await self._db.fetch(
            """SELECT p.connection_id, p.contact_id, p.channel
               FROM unnest($1::text[], $2::uuid[]) AS k(connection_id, contact_id)
               JOIN enricher.contact_preferences p USING (connection_id, contact_id)""",
            [c for c, _ in keys],
            [i for _, i in keys],
        )
        return {(row["connection_id"], row["contact_id"]): row["channel"] for row in rows}

    async def set(self, connection_id: str, contact_id: UUID, channel: Channel | None) -> None:
        """Keep ``channel`` as the contact's preference (None: forget it)."""
        if channel is None:
            await self._db.execute(
                """DELETE FROM enricher.contact_preferences
                   WHERE connection_id = $1 AND contact_id = $2""",
                connection_id,
                contact_id,
            )
            return
        await self._db.execute(
            """INSERT INTO enricher.contact_preferences (connection_id, contact_id, channel)
               VALUES ($1, $2, $3)
               ON CONFLICT (connection_id, contact_id) DO UPDATE
                   SET channel = excluded.channel, updated_at = now()""",
            connection_id,
            contact_id,
            channel,
        )
