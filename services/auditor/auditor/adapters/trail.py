"""PostgresTrail over schema ``audit``: the only writer of the audit tables.

What it keeps of a person is hashed, masked or sealed (``auditor.personal``). A provider status
is kept only for a notification of the connection whose account signed it (see
``PostgresTrail.status``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar, get_args
from uuid import UUID

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter

from auditor.adapters import privacy
from auditor.adapters.queries import TrailQueries
from auditor.personal import PersonalData
from auditor.status import FINAL_RANK, rank
from common.contracts import (
    FAILURE_REASONS,
    SUPPRESSION_REASONS,
    Channel,
    ForgetContact,
    InboundSms,
    NotificationAmbiguous,
    NotificationDeferred,
    NotificationFailed,
    NotificationReleased,
    NotificationSent,
    NotificationSkipped,
    SendNotification,
    SuppressionChanged,
    TwilioStatus,
)
from common.groupcommit import GroupCommit, Merged, Unit, in_transaction, item, json_function
from common.logging import mask_error, mask_text

__all__ = [
    "PostgresTrail",
    "channel_label",
    "outcome_counter",
    "security_counter",
    "skip_reason",
    "status_counter",
    "suppression_counter",
]

log = structlog.get_logger("auditor")

T = TypeVar("T")

#: Outcome -> (notification state, rank within one attempt). ``released`` ranks last: it
#: follows the ``failed`` of the same attempt.
_OUTCOME_STATES = {
    "deferred": ("retrying", 1),
    "ambiguous": ("ambiguous", 2),
    "sent": ("sent", 3),
    "failed": ("failed", 3),
    "released": ("released", 4),
}

#: States a skip may replace: nothing was sent yet (requested: the dispatcher found the address
#: suppressed before sending; retrying: before the next attempt) or nothing will be (released).
#: A sent, failed or ambiguous notification keeps its state: a skip reported for a replayed
#: copy of its command does not undo what happened.
_SKIPPABLE_STATES = ("requested", "skipped", "retrying", "released")

#: The channel a provider status belongs to, when the trail does not know its notification.
_RESOURCE_CHANNELS = {"message": "sms", "call": "voice", "email": "email"}

_CHANNELS: tuple[str, ...] = get_args(Channel)


#: Records of the trail's three busiest kinds, one round trip for all (migration 008): each
#: item's row of its ``audit.record_<kind>``, in order.
#: Alone (a single-statement batch) it raises where it would stop for a repair (migration 010).
_record_many = json_function("audit.record_many", alone_flag=True)


def skip_reason(reason: str) -> str:
    """The operator's reason for a skip (``no_contact_with_mobile`` -> ``no_contact``)."""
    return "no_contact" if reason.startswith("no_contact") else reason


def _skip_error(event: NotificationSkipped) -> str:
    """What the skip's attempt keeps: the reason, and the producer's words for it
    (``opted_out: suppressed: bounced``), masked in case the words name an address."""
    return f"{event.reason}: {mask_text(event.detail)}" if event.detail else event.reason


def _masked_error(error: str | None) -> str | None:
    """A provider's error text masked (Twilio's 21211 quotes the ``To`` number, with or without
    ``+``) like a recipient, whatever the producer did: the trail keeps no clear address."""
    return mask_error(error) if error else error


def channel_label(channel: str | None) -> str:
    """A metric's ``channel`` label: sms, email, voice, or ``none`` (a skip that names no
    channel), so that a stray value cannot grow the label set."""
    return channel if channel in _CHANNELS else "none"


def outcome_counter(registry: CollectorRegistry) -> Counter:
    """``mlc_notifications_total{channel,outcome,reason}``: every attempt outcome and skip the
    trail recorded (repeats not counted); ``reason`` is one of FAILURE_REASONS, ``none`` or
    ``other``; ``channel`` as :func:`channel_label`."""
    return Counter(
        "mlc_notifications_total",
        "Notification outcomes recorded in the audit trail, by channel, outcome and reason",
        ["channel", "outcome", "reason"],
        registry=registry,
    )


def status_counter(registry: CollectorRegistry) -> Counter:
    """``mlc_notification_statuses_total{channel,status}``: each time a provider status moved a
    message forward to a final rank (see ``auditor.status``). A message that moves from one
    final status to a later one (completed -> answered, delivered -> read) counts in both;
    repeated and late statuses are not counted. Only known statuses rank final, so ``status``
    stays a short list."""
    return Counter(
        "mlc_notification_statuses_total",
        "Final provider statuses reached by notifications, by channel and status",
        ["channel", "status"],
        registry=registry,
    )


def suppression_counter(registry: CollectorRegistry) -> Counter:
    """``mlc_suppression_changes_total{action,reason}``: addresses added to or lifted from the
    suppression list, once per event; ``reason`` is one of SUPPRESSION_REASONS or ``other``."""
    return Counter(
        "mlc_suppression_changes_total",
        "Suppression list changes recorded in the audit trail, by action and reason",
        ["action", "reason"],
        registry=registry,
    )


def security_counter(registry: CollectorRegistry) -> Counter:
    """``mlc_security_events_total{kind}``: attempts the trail refused as an attack would be
    refused; ``kind`` is ``cross_tenant_status`` (a status signed for one connection naming
    another connection's message). Anything above zero deserves a look."""
    return Counter(
        "mlc_security_events_total",
        "Events the audit trail refused for security reasons, by kind",
        ["kind"],
        registry=registry,
    )


class PostgresTrail(TrailQueries):
    """Writes the trail (and reads it through TrailQueries)."""

    def __init__(
        self,
        db: asyncpg.Pool,
        *,
        data: PersonalData,
        outcomes: Counter | None = None,
        statuses: Counter | None = None,
        suppressions: Counter | None = None,
        security: Counter | None = None,
        group: GroupCommit | None = None,
    ) -> None:
        """``data`` holds the auditor's data key: nothing about a person is written without
        it. The counters are optional so that a tool reading or repairing the trail needs no
        registry; the service passes all four (``outcome_counter`` and its siblings). With
        ``group`` the records of concurrent deliveries share transactions (the service's
        consumer); without it each record is its own transaction."""
        super().__init__(db, data)
        self._group = group
        self._outcomes = outcomes
        self._statuses = statuses
        self._suppressions = suppressions
        self._security = security

    async def _tx(self, unit: Unit[T]) -> T:
        return await in_transaction(self._db, unit, self._group)

    def _count(self, outcome: str, reason: str | None, channel: str | None) -> None:
        if self._outcomes is not None:
            known = reason if reason in FAILURE_REASONS else "none" if reason is None else "other"
            self._outcomes.labels(
                channel=channel_label(channel), outcome=outcome, reason=known
            ).inc()

    async def requested(self, c: SendNotification) -> None:
        """Record a send command (every copy; the first one creates the row). A new
        notification for a document whose earlier one an operator released is linked to it
        (``retry_of``): a corrected recipient makes a new notification, not a new attempt. The
        command names the notification's connection: statuses stored for its message under
        another connection's signature are dropped now (see ``status``)."""
        s = c.source
        address = c.recipient.address
        args = (
            c.notification_id,
            c.idempotency_key,
            c.channel,
            s.connection_id,
            s.division,
            s.entity,
            s.id,
            s.number,
            c.fact,
            self._data.hash(address),
            self._data.mask(address),
            c.recipient.contact_id,
            c.template,
            self._data.seal(c.content),
        )

        async def finish(db: asyncpg.Connection, row: dict[str, Any]) -> list[asyncpg.Record]:
            # The row was inserted or refreshed (an erased row stays erased) and a retry linked;
            # statuses another connection signed for its message are dropped here (007).
            if not row["o_foreign_statuses"]:
                return []
            return await self._drop_foreign_statuses(db, c.notification_id, row["o_provider_id"])

        unit = Merged(_record_many, item("requested", *args), finish, single_statement=True)
        self._refused(await self._tx(unit))

    async def outcome(
        self,
        message_id: str,
        event: NotificationSent
        | NotificationFailed
        | NotificationAmbiguous
        | NotificationDeferred
        | NotificationReleased,
    ) -> bool:
        """Record one attempt's outcome (once per message id) and move the notification's
        state forward. An outcome naming the provider's id links the message to its
        notification: statuses stored for it under another connection's signature are
        dropped then (see ``status``). Returns False for a repeat."""
        outcome = event.routing_key.split(".")[-1]
        state, state_rank = _OUTCOME_STATES[outcome]
        provider_id = getattr(event, "provider_id", None)
        reason = getattr(event, "reason", None)
        if outcome == "failed" and reason is None:
            # A producer that names no reason (the consumer loop parking a message whose
            # retry tiers ran out) still files it: transient or unexpected errors that ran
            # out are "exhausted", anything else is for the provider's account.
            error_class = getattr(event, "error_class", None)
            reason = (
                "exhausted"
                if error_class in ("exhausted", "transient", "unexpected")
                else "provider_error"
            )

        args = (
            message_id,
            event.notification_id,
            outcome,
            event.attempt,
            provider_id,
            getattr(event, "error_class", None),
            getattr(event, "error_code", None),
            _masked_error(getattr(event, "error", None)),
            getattr(event, "retry_at", None),
            getattr(event, "requested_by", None),
            event.channel,
            state,
            state_rank,
            reason if state == "failed" else None,
        )

        async def finish(
            db: asyncpg.Connection, row: dict[str, Any]
        ) -> tuple[bool, str | None, list[asyncpg.Record]]:
            # The attempt once per message id, the notification's message and channel, its
            # state moved forward (by attempt, then by outcome rank): migration 007.
            if not row["o_recorded"]:
                return False, None, []  # a redelivered event: recorded already
            dropped: list[asyncpg.Record] = []
            if row["o_foreign_statuses"]:
                dropped = await self._drop_foreign_statuses(db, event.notification_id, provider_id)
            return True, row["o_channel"], dropped

        unit = Merged(_record_many, item("outcome", *args), finish, single_statement=True)
        recorded, channel, dropped = await self._tx(unit)
        if not recorded:
            return False
        self._count(outcome, reason, channel)
        self._refused(dropped)
        return True

    async def skipped(self, message_id: str, event: NotificationSkipped) -> None:
        """Record a skip, from the enricher (nobody to tell: no row yet) or from the dispatcher
        (the address is suppressed: the send command's row exists, state ``requested``). The
        row moves to ``skipped`` only from a state where nothing was sent (_SKIPPABLE_STATES);
        a later copy of the send command leaves the state alone (``requested`` never sets it)."""
        s = event.source
        # Newer producers may name the channel (an extra field); the row knows it otherwise.
        named_channel = getattr(event, "channel", None)
        async with self._db.acquire() as db, db.transaction():
            await db.execute(
                """INSERT INTO audit.notifications (notification_id, connection_id, division,
                       entity, document_id, document_number, fact, state, failure_reason,
                       channel, requested_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, 'skipped', $8, $9, now())
                   ON CONFLICT (notification_id) DO UPDATE SET state = 'skipped',
                       failure_reason = EXCLUDED.failure_reason,
                       channel = coalesce(audit.notifications.channel, EXCLUDED.channel),
                       updated_at = now()
                   WHERE audit.notifications.state = ANY($10::text[])""",
                event.notification_id,
                s.connection_id,
                s.division,
                s.entity,
                s.id,
                s.number,
                event.fact,
                skip_reason(event.reason),
                named_channel if named_channel in _CHANNELS else None,
                list(_SKIPPABLE_STATES),
            )
            inserted = await db.fetchval(
                """INSERT INTO audit.attempts (message_id, notification_id, outcome, error)
                   VALUES ($1, $2, 'skipped', $3) ON CONFLICT (message_id) DO NOTHING
                   RETURNING id""",
                message_id,
                event.notification_id,
                _skip_error(event),
            )
            channel = await db.fetchval(
                "SELECT channel FROM audit.notifications WHERE notification_id = $1",
                event.notification_id,
            )
        if inserted is not None:
            self._count("skipped", skip_reason(event.reason), channel)

    async def retry_requested(self, notification_id: UUID, requested_by: str | None) -> None:
        """An operator asked to retry a notification that was never claimed (skipped, or failed
        before a send command existed): its document is read again."""
        await self._db.execute(
            """INSERT INTO audit.attempts (notification_id, outcome, requested_by)
               VALUES ($1, 'retry_requested', $2)""",
            notification_id,
            requested_by,
        )
        await self._db.execute(
            """UPDATE audit.notifications SET state = 'released', updated_at = now()
               WHERE notification_id = $1 AND state IN ('skipped', 'failed')""",
            notification_id,
        )

    async def inbound(self, event: InboundSms) -> None:
        """Keep an inbound SMS's meaning (opt-out, opt-in, help), once per MessageSid, with the
        sender masked and hashed (erasure finds it): the suppression list that acts on it is
        the dispatcher's."""
        await self._db.execute(
            """INSERT INTO audit.inbound (message_sid, connection_id, sender, sender_hash, kind,
                   keyword, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (message_sid) DO NOTHING""",
            event.message_sid,
            event.connection_id,
            self._data.mask(event.from_number),
            self._data.hash(event.from_number),
            event.kind,
            event.keyword,
            event.received_at,
        )

    async def status(self, event: TwilioStatus) -> bool:
        """Keep every callback (exact repeats counted once, the form stripped of personal
        data) and move the current status only forward, in one transaction; a move to a final
        rank is counted per channel.

        A callback signed with one connection's own account (``connection_id``, from the
        callback URL's ``?connection=``) may only be applied to a notification of that
        connection: one company must not be able to mark another's message delivered by
        signing with its own token. A mismatch is refused, counted
        (``mlc_security_events_total{kind="cross_tenant_status"}``) and logged; nothing of it
        is kept. A callback naming no connection came to the install's shared account, which
        no tenant can sign for: it applies to any notification. While the trail does not know
        the message yet (a callback can overtake notification.sent), the status is kept with
        the connection it names and dropped once the message turns out to be another
        connection's (``outcome``, ``requested``). Returns False when refused."""
        claimed = getattr(event, "connection_id", None)  # TwilioStatus gains it; kept if extra

        # Under the provider id's lock: the owner check, the callback kept, the current status
        # moved forward, and the channel when it moved to a final rank (007).
        args = (
            event.provider_id,
            event.status,
            rank(event.status),
            event.error_code,
            self._data.strip(event.raw),
            event.received_at,
            claimed,
            FINAL_RANK,
        )
        unit: Merged[dict[str, Any], dict[str, Any]] = Merged(
            _record_many, item("status", *args), single_statement=True
        )
        row = await self._tx(unit)
        if row["o_owner"] is not None:
            self._refuse(event.provider_id, event.status, claimed, str(row["o_owner"]))
            return False
        moved_to = row["o_moved_to"]
        if moved_to is not None and moved_to >= FINAL_RANK:
            # The callback's resource names the channel while the trail has not heard of the
            # send yet (a callback can overtake notification.sent).
            channel = row["o_channel"] or _RESOURCE_CHANNELS[event.resource]
            self._count_status(channel, event.status)
        return True

    async def _drop_foreign_statuses(
        self, db: asyncpg.Connection, notification_id: UUID, provider_id: str | None
    ) -> list[asyncpg.Record]:
        """Now that the notification names its message and connection: drop the callbacks
        kept for that message under another connection's signature, and rebuild its current
        status from the ones left. Returns what was dropped (for ``_refused``).

        Called only after ``audit.foreign_statuses`` (migration 007) found some, in the same
        transaction: that took the provider id's advisory lock, which holds until the commit,
        so a status signed for another connection cannot slip in between."""
        if provider_id is None:
            return []
        dropped = await db.fetch(
            """DELETE FROM audit.status_events e USING audit.notifications n
               WHERE n.notification_id = $1 AND e.provider_id = n.provider_id
                 AND e.connection_id IS NOT NULL AND n.connection_id IS NOT NULL
                 AND e.connection_id <> n.connection_id
               RETURNING e.provider_id, e.status, e.connection_id AS claimed,
                         n.connection_id AS owner""",
            notification_id,
        )
        if dropped:
            await self._rebuild_status(db, provider_id)
        return list(dropped)

    @staticmethod
    async def _rebuild_status(db: asyncpg.Connection, provider_id: str) -> None:
        """The current status again from the callbacks kept: the highest rank, the earliest
        of equals (as forward-only recording would have left it)."""
        kept = await db.fetch(
            """SELECT status, error_code FROM audit.status_events WHERE provider_id = $1
               ORDER BY received_at, id""",
            provider_id,
        )
        await db.execute("DELETE FROM audit.statuses WHERE provider_id = $1", provider_id)
        if kept:
            best = max(kept, key=lambda e: rank(e["status"]))
            await db.execute(
                """INSERT INTO audit.statuses (provider_id, status, rank, error_code)
                   VALUES ($1, $2, $3, $4)""",
                provider_id,
                best["status"],
                rank(best["status"]),
                best["error_code"],
            )

    def _refused(self, dropped: list[asyncpg.Record]) -> None:
        for row in dropped:
            self._refuse(row["provider_id"], row["status"], row["claimed"], row["owner"])

    def _refuse(self, provider_id: str, status: str, claimed: str | None, owner: str) -> None:
        """Count and log a status signed for ``claimed`` about a message of ``owner``."""
        if self._security is not None:
            self._security.labels(kind="cross_tenant_status").inc()
        log.warning(
            "security_event",
            kind="cross_tenant_status",
            provider_id=provider_id,
            status=status,
            signed_for=claimed,
            notification_connection=owner,
        )

    def _count_status(self, channel: str | None, status: str) -> None:
        if self._statuses is not None:
            self._statuses.labels(channel=channel_label(channel), status=status.lower()).inc()

    async def suppression(self, message_id: str, event: SuppressionChanged) -> bool:
        """Keep one suppression change, once per message id. Only the masked address and the
        address's key are stored (masked again, and the operator's name and note too, in case
        a producer let an address slip through). Returns False for a repeat."""
        inserted = await self._db.fetchval(
            """INSERT INTO audit.suppression_events (message_id, connection_id, channel,
                   address_key, address_masked, action, reason, source, notification_id,
                   requested_by, note, occurred_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
               ON CONFLICT (message_id) DO NOTHING RETURNING id""",
            message_id,
            event.connection_id,
            event.channel,
            event.address_key,
            mask_text(event.address_masked),
            event.action,
            event.reason,
            event.source,
            event.notification_id,
            mask_text(event.requested_by) if event.requested_by else None,
            mask_text(event.note) if event.note else None,
            event.occurred_at,
        )
        if inserted is None:
            return False
        if self._suppressions is not None:
            reason = event.reason if event.reason in SUPPRESSION_REASONS else "other"
            self._suppressions.labels(action=event.action, reason=reason).inc()
        return True

    async def purge(
        self, *, older_than: timedelta, requested_by: str, dry_run: bool = False
    ) -> dict[str, Any]:
        """Delete what retention no longer allows (see ``adapters.privacy.purge``)."""
        async with self._db.acquire() as db:
            return await privacy.purge(
                db, older_than=older_than, requested_by=requested_by, dry_run=dry_run
            )

    async def forget(self, event: ForgetContact) -> dict[str, int] | None:
        """Erase one person (see ``adapters.privacy.forget``); None for a repeated request."""
        async with self._db.acquire() as db:
            return await privacy.forget(db, self._data, event)
