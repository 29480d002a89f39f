"""PostgresTrail over schema ``audit``: the only writer of the audit tables."""

from __future__ import annotations

from typing import get_args
from uuid import UUID

import asyncpg
from prometheus_client import CollectorRegistry, Counter

from auditor.adapters.queries import TrailQueries
from auditor.status import FINAL_RANK, rank
from common.contracts import (
    FAILURE_REASONS,
    SUPPRESSION_REASONS,
    Channel,
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
from common.logging import mask_text

__all__ = [
    "PostgresTrail",
    "channel_label",
    "outcome_counter",
    "skip_reason",
    "status_counter",
    "suppression_counter",
]

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


def skip_reason(reason: str) -> str:
    """The operator's reason for a skip (``no_contact_with_mobile`` -> ``no_contact``)."""
    return "no_contact" if reason.startswith("no_contact") else reason


def _skip_error(event: NotificationSkipped) -> str:
    """What the skip's attempt keeps: the reason, and the producer's words for it
    (``opted_out: suppressed: bounced``), masked in case the words name an address."""
    return f"{event.reason}: {mask_text(event.detail)}" if event.detail else event.reason


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


class PostgresTrail(TrailQueries):
    """Writes the trail (and reads it through TrailQueries)."""

    def __init__(
        self,
        db: asyncpg.Pool,
        *,
        outcomes: Counter | None = None,
        statuses: Counter | None = None,
        suppressions: Counter | None = None,
    ) -> None:
        """The counters are optional so that a tool reading or repairing the trail needs no
        registry; the service passes all three (``outcome_counter`` and its siblings)."""
        super().__init__(db)
        self._outcomes = outcomes
        self._statuses = statuses
        self._suppressions = suppressions

    def _count(self, outcome: str, reason: str | None, channel: str | None) -> None:
        if self._outcomes is not None:
            known = reason if reason in FAILURE_REASONS else "none" if reason is None else "other"
            self._outcomes.labels(
                channel=channel_label(channel), outcome=outcome, reason=known
            ).inc()

    async def requested(self, c: SendNotification) -> None:
        """Record a send command (every copy; the first one creates the row). A new
        notification for a document whose earlier one an operator released is linked to it
        (``retry_of``): a corrected recipient makes a new notification, not a new attempt."""
        s = c.source
        async with self._db.acquire() as db, db.transaction():
            created = await self._upsert_requested(db, c)
            if created:
                await db.execute(
                    """WITH old AS (
                           SELECT notification_id FROM audit.notifications
                           WHERE connection_id = $2 AND division = $3 AND entity = $4
                             AND document_id = $5 AND fact = $6
                             AND (channel = $7 OR channel IS NULL)  -- a skip names none
                             AND state = 'released' AND notification_id <> $1
                           ORDER BY updated_at DESC LIMIT 1)
                       UPDATE audit.notifications n SET retry_of = old.notification_id
                       FROM old WHERE n.notification_id = $1""",
                    c.notification_id,
                    s.connection_id,
                    s.division,
                    s.entity,
                    s.id,
                    c.fact,
                    c.channel,
                )
                await db.execute(
                    """UPDATE audit.notifications SET state = 'replaced', updated_at = now()
                       WHERE notification_id = (SELECT retry_of FROM audit.notifications
                                                WHERE notification_id = $1)""",
                    c.notification_id,
                )

    async def _upsert_requested(self, db: asyncpg.Connection, c: SendNotification) -> bool:
        s = c.source
        return bool(
            await db.fetchval(
                """INSERT INTO audit.notifications (notification_id, idempotency_key, channel,
                   connection_id, division, entity, document_id, document_number, fact,
                   recipient, template, content, requested_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
               ON CONFLICT (notification_id) DO UPDATE SET
                   idempotency_key = EXCLUDED.idempotency_key, channel = EXCLUDED.channel,
                   connection_id = EXCLUDED.connection_id, division = EXCLUDED.division,
                   entity = EXCLUDED.entity, document_id = EXCLUDED.document_id,
                   document_number = EXCLUDED.document_number, fact = EXCLUDED.fact,
                   recipient = EXCLUDED.recipient, template = EXCLUDED.template,
                   content = EXCLUDED.content,
                   requested_at = coalesce(audit.notifications.requested_at, now())
               RETURNING (xmax = 0)""",
                c.notification_id,
                c.idempotency_key,
                c.channel,
                s.connection_id,
                s.division,
                s.entity,
                s.id,
                s.number,
                c.fact,
                c.recipient.address,
                c.template,
                c.content,
            )
        )

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
        state forward. Returns False for a repeat."""
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
        async with self._db.acquire() as db, db.transaction():
            inserted = await db.fetchval(
                """INSERT INTO audit.attempts (message_id, notification_id, outcome, attempt,
                       provider_id, error_class, error_code, error, retry_at, requested_by)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                   ON CONFLICT (message_id) DO NOTHING RETURNING id""",
                message_id,
                event.notification_id,
                outcome,
                event.attempt,
                provider_id,
                getattr(event, "error_class", None),
                getattr(event, "error_code", None),
                getattr(event, "error", None),
                getattr(event, "retry_at", None),
                getattr(event, "requested_by", None),
            )
            if inserted is None:
                return False  # a redelivered event: recorded already
            channel = await db.fetchval(
                """INSERT INTO audit.notifications (notification_id, channel) VALUES ($1, $2)
                   ON CONFLICT (notification_id) DO UPDATE SET
                       provider_id = coalesce($3, audit.notifications.provider_id),
                       channel = coalesce(audit.notifications.channel, $2),
                       updated_at = now()
                   RETURNING channel""",
                event.notification_id,
                event.channel,
                provider_id,
            )
            if provider_id is not None:
                await db.execute(
                    """UPDATE audit.notifications SET provider_id = $2
                       WHERE notification_id = $1""",
                    event.notification_id,
                    provider_id,
                )
            # Forward only: by attempt, then by outcome rank within the attempt.
            await db.execute(
                """UPDATE audit.notifications SET state = $2, state_rank = $3, last_attempt = $4,
                       failure_reason = $5, error_code = coalesce($6, error_code),
                       updated_at = now()
                   WHERE notification_id = $1 AND (last_attempt, state_rank) < ($4, $3)""",
                event.notification_id,
                state,
                state_rank,
                event.attempt,
                reason if state == "failed" else None,
                getattr(event, "error_code", None),
            )
        self._count(outcome, reason, channel)
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
        sender masked: the suppression list that acts on it is the dispatcher's."""
        await self._db.execute(
            """INSERT INTO audit.inbound (message_sid, connection_id, sender, kind, keyword,
                   received_at) VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (message_sid) DO NOTHING""",
            event.message_sid,
            event.connection_id,
            mask_text(event.from_number),
            event.kind,
            event.keyword,
            event.received_at,
        )

    async def status(self, event: TwilioStatus) -> None:
        """Keep every callback (exact repeats counted once) and move the current status only
        forward, in one transaction; a move to a final rank is counted per channel."""
        async with self._db.acquire() as db, db.transaction():
            await db.execute(
                """INSERT INTO audit.status_events (provider_id, status, error_code, raw,
                       received_at) VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (provider_id, status) DO UPDATE
                       SET repeats = audit.status_events.repeats + 1""",
                event.provider_id,
                event.status,
                event.error_code,
                event.raw,
                event.received_at,
            )
            moved_to = await db.fetchval(
                """INSERT INTO audit.statuses (provider_id, status, rank, error_code)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (provider_id) DO UPDATE SET status = EXCLUDED.status,
                       rank = EXCLUDED.rank, error_code = EXCLUDED.error_code, updated_at = now()
                   WHERE audit.statuses.rank < EXCLUDED.rank
                   RETURNING rank""",
                event.provider_id,
                event.status,
                rank(event.status),
                event.error_code,
            )
            final = moved_to is not None and moved_to >= FINAL_RANK
            channel = await self._status_channel(db, event) if final else None
        if final:
            self._count_status(channel, event.status)

    @staticmethod
    async def _status_channel(db: asyncpg.Connection, event: TwilioStatus) -> str:
        """The channel of the notification the status belongs to; the callback's resource when
        the trail has not heard of the send yet (a callback can overtake notification.sent)."""
        known = await db.fetchval(
            """SELECT channel FROM audit.notifications WHERE provider_id = $1
               ORDER BY updated_at DESC LIMIT 1""",
            event.provider_id,
        )
        return str(known) if known else _RESOURCE_CHANNELS[event.resource]

    def _count_status(self, channel: str | None, status: str) -> None:
        if self._statuses is not None:
            self._statuses.labels(channel=channel_label(channel), status=status.lower()).inc()

    async def suppression(self, message_id: str, event: SuppressionChanged) -> bool:
        """Keep one suppression change, once per message id. Only the masked address and the
        address's key are stored (masked again, and the operator's note too, in case a
        producer let an address slip through). Returns False for a repeat."""
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
            event.requested_by,
            mask_text(event.note) if event.note else None,
            event.occurred_at,
        )
        if inserted is None:
            return False
        if self._suppressions is not None:
            reason = event.reason if event.reason in SUPPRESSION_REASONS else "other"
            self._suppressions.labels(action=event.action, reason=reason).inc()
        return True
