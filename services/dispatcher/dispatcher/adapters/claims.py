"""PostgresClaimStore over schema ``dispatch``: the claim taken before a send, and the outbox
that carries every claim change's event to the broker.

Every state change of a claim and the event that reports it are written in one transaction
(``settle``), so no crash between the two can leave a claim ``sent`` without its
``notification.sent``: the outbox relay (``outbox.py``) publishes what the commit recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg

from common.contracts import Message, NotificationReleased, NotificationSent, SendNotification
from common.contracts.suppressions import address_key_sql
from common.groupcommit import GroupCommit, Merged, in_transaction, item, json_function
from dispatcher.ports import Claim, Unsettled

__all__ = ["PostgresClaimStore", "queue_event"]

#: ``common.contracts.address_key`` in SQL over a claim command's recipient address.
_ADDRESS_KEY = address_key_sql("command #>> '{recipient,address}'")


#: Claims and settles of concurrent deliveries, one round trip for all (migration 004).
_claim_many = json_function("dispatch.claim_many")


async def _claim(db: asyncpg.Connection, row: dict[str, Any]) -> Claim:
    """A claim item's row as a Claim: taken, or why not (its holder's state)."""
    attempts, used = row["attempts"], _used(row)
    if row["claimed"]:
        return Claim("claimed", attempts, budget_used=used)
    state = row["state"]
    if state == "sending":
        return Claim("stale" if row["stale"] else "in_flight", attempts, budget_used=used)
    if state == "released":
        return Claim(
            "deferred", attempts, budget_used=used, retry_after=max(row["wait"] or 0.0, 0.0)
        )
    return Claim(state, attempts, row["provider_id"], budget_used=used)


async def queue_event(
    db: asyncpg.Connection, event: Message, correlation_id: str | None = None
) -> None:
    """Add ``event`` to the outbox inside the caller's transaction."""
    await db.execute(
        """INSERT INTO dispatch.outbox (message_type, body, correlation_id)
           VALUES ($1, $2::text::jsonb, $3)""",
        event.key(),
        event.model_dump_json(),
        correlation_id,
    )


class PostgresClaimStore:
    def __init__(
        self,
        db: asyncpg.Pool,
        *,
        stale_seconds: float,
        resolve_after_seconds: float | None = None,
        wake: asyncio.Event | None = None,
        group: GroupCommit | None = None,
    ) -> None:
        """With ``group``, the claims and settles of concurrent deliveries share transactions
        (``GroupCommit``; each call still returns only after its own change committed)."""
        self._db = db
        self._group = group
        self._stale = stale_seconds
        self._resolve_after = (
            stale_seconds if resolve_after_seconds is None else (resolve_after_seconds)
        )
        #: Set after each commit that queued an event, so the relay publishes it at once.
        self._wake = wake

    def _queued(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def claim(self, command: SendNotification) -> Claim:
        """Take the claim unless someone holds or used it, or its ``retry_at`` is ahead. One
        statement decides between replicas and copies: the unique key."""
        unit = Merged(
            _claim_many,
            item(
                "claim",
                command.idempotency_key,
                command.notification_id,
                command.channel,
                command.model_dump_json(),
                self._stale,
            ),
            _claim,
            # dispatch.claim_many answers every item in its one call; _claim reads nothing
            single_statement=True,
        )
        return await in_transaction(self._db, unit, self._group)

    async def settle(
        self,
        key: str,
        state: str,
        event: Message,
        *,
        provider_id: str | None = None,
        error_code: str | None = None,
        reason: str | None = None,
        retry_at: datetime | None = None,
        correlation_id: str | None = None,
    ) -> None:
        # The claim's change and its event in the outbox, one item of dispatch.claim_many.
        unit: Merged[dict[str, Any], dict[str, Any]] = Merged(
            _claim_many,
            item(
                "settle",
                key,
                state,
                provider_id,
                error_code,
                reason,
                retry_at,
                event.key(),
                event.model_dump_json(),
                correlation_id,
            ),
            single_statement=True,
        )
        await in_transaction(self._db, unit, self._group)
        self._queued()

    async def release(
        self, notification_id: str, *, requested_by: str | None, correlation_id: str | None
    ) -> bool:
        async with self._db.acquire() as db, db.transaction():
            row = await db.fetchrow(
                """UPDATE dispatch.claims SET state = 'released', budget_from = attempts,
                       retry_at = NULL, reason = NULL, error_code = NULL, updated_at = now()
                   WHERE notification_id = $1 AND state IN ('failed', 'released', 'skipped')
                   RETURNING idempotency_key, attempts, channel, command""",
                notification_id,
            )
            if row is None:
                return False
            command = _command(row["command"])
            await queue_event(
                db,
                NotificationReleased(
                    notification_id=notification_id,
                    attempt=row["attempts"],
                    channel=row["channel"],
                    idempotency_key=row["idempotency_key"],
                    source=command.source if command else None,
                    requested_by=requested_by,
                ),
                correlation_id,
            )
        self._queued()
        return True

    async def unsettled(self, *, limit: int) -> list[Unsettled]:
        """``sending`` claims older than the stale period and ``ambiguous`` ones older than
        the resolution deadline. Each is leased (``updated_at`` moved to now) so that another
        replica leaves it alone until the deadline passes again."""
        async with self._db.acquire() as db, db.transaction():
            rows = await db.fetch(
                """WITH due AS (
                       SELECT idempotency_key FROM dispatch.claims
                       WHERE (state = 'sending'
                              AND updated_at < now() - make_interval(secs => $1))
                          OR (state = 'ambiguous'
                              AND updated_at < now() - make_interval(secs => $2))
                       ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED)
                   UPDATE dispatch.claims c SET updated_at = now()
                   FROM due WHERE c.idempotency_key = due.idempotency_key
                   RETURNING c.idempotency_key, c.notification_id, c.state, c.attempts,
                             c.budget_from, c.claimed_at, c.command""",
                self._stale,
                self._resolve_after,
                limit,
            )
        return [
            Unsettled(
                key=r["idempotency_key"],
                notification_id=str(r["notification_id"]),
                state=r["state"],
                attempts=r["attempts"],
                budget_used=_used(r),
                claimed_at=r["claimed_at"],
                command=_command(r["command"]),
            )
            for r in rows
        ]

    async def command_for(
        self, *, provider_id: str | None = None, notification_id: str | None = None
    ) -> SendNotification | None:
        """The command of the claim that got ``provider_id`` or is ``notification_id``'s."""
        if provider_id is None and notification_id is None:
            return None
        raw = await self._db.fetchval(
            """SELECT command FROM dispatch.claims
               WHERE ($1::text IS NOT NULL AND provider_id = $1)
                  OR ($2::uuid IS NOT NULL AND notification_id = $2::uuid)
               ORDER BY updated_at DESC LIMIT 1""",
            provider_id,
            notification_id,
        )
        return _command(raw)

    async def confirm_sent(self, notification_id: str, provider_id: str) -> bool:
        """A provider event proves the send of a claim still ``sending`` or ``ambiguous``:
        settle it sent (with its NotificationSent) so the resolver leaves it alone."""
        async with self._db.acquire() as db, db.transaction():
            row = await db.fetchrow(
                """UPDATE dispatch.claims SET state = 'sent', provider_id = $2,
                       updated_at = now()
                   WHERE notification_id = $1::uuid AND state IN ('sending', 'ambiguous')
                   RETURNING attempts, channel""",
                notification_id,
                provider_id,
            )
            if row is None:
                return False
            await queue_event(
                db,
                NotificationSent(
                    notification_id=notification_id,
                    attempt=row["attempts"],
                    channel=row["channel"],
                    provider_id=provider_id,
                    provider_status="processed",
                ),
            )
        self._queued()
        return True

    async def erase_recipients(self, contact_id: str | None, keys: list[str]) -> int:
        """Replace the recipient (address and name) kept in the commands of settled claims
        to the contact or to one of the address keys with ``erased`` (an erasure). A claim
        still unsettled keeps it: the resolver may need it to finish that one send."""
        status = await self._db.execute(
            f"""UPDATE dispatch.claims SET command = jsonb_set(jsonb_set(command,
                       '{{recipient,address}}', '"erased"'), '{{recipient,name}}', 'null'),
                   updated_at = now()
               WHERE state NOT IN ('sending', 'ambiguous')
                 AND command #>> '{{recipient,address}}' <> 'erased'
                 AND (command #>> '{{recipient,contact_id}}' = $1
                      OR {_ADDRESS_KEY} = ANY($2::text[]))""",  # noqa: S608 (constants only)
            contact_id,
            keys,
        )
        return int(status.rsplit(" ", 1)[-1])

    async def retake(self, key: str) -> Claim:
        row = await self._db.fetchrow(
            """UPDATE dispatch.claims SET state = 'sending', attempts = attempts + 1,
                   claimed_at = now(), updated_at = now()
               WHERE idempotency_key = $1 AND state IN ('sending', 'ambiguous')
               RETURNING attempts, budget_from""",
            key,
        )
        if row is None:
            return Claim("in_flight", 0)
        return Claim("claimed", row["attempts"], budget_used=_used(row))


def _used(row: Mapping[str, Any]) -> int:
    return int(row["attempts"]) - int(row["budget_from"])


def _command(raw: object) -> SendNotification | None:
    if raw is None:
        return None
    return SendNotification.model_validate(raw)
