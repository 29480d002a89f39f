"""Firing due notices: reminders and messages held for quiet hours.

Oldest first; of several reminders of one document due at once only the latest goes (an
invoice caught up late gets its latest reminder, not all of them). Right before each: the rule
must still be on, the document and its fact still there, its due moment not moved later, and
for a reminder the invoice still open on ``cashflow/Receivables``. An opt-out found then ends
the document's whole chain. A notice that fails to fire (Exact unreachable) waits
``_DEFER`` and is tried again; it never holds up the others.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from uuid import UUID

import structlog

from common.contracts import Message, NotificationSkipped
from common.errors import MlcError
from enricher.decisions import Decider, Held, outcome_of
from enricher.documents import KINDS, DocumentKind
from enricher.ports import DueNotices, Notice, Record

__all__ = ["fire_due", "unpaid"]

log = structlog.get_logger("enricher")

#: How long a notice that failed to fire (Exact unreachable, ...) waits before the next try.
_DEFER = timedelta(minutes=5)


async def fire_due(decider: Decider, batch: DueNotices) -> list[tuple[Notice, Message]]:
    """Settle every notice of ``batch``; returns the messages to publish (before commit)."""
    now = decider.clock()
    reminders: dict[tuple[str, int, str, UUID], Notice] = {}
    others: list[Notice] = []
    for notice in batch.notices:  # oldest first: the latest reminder per document wins
        k = notice.key
        rule = decider.rulebook.for_connection(k.connection_id).rule(k.rule)
        if rule is None or rule.timing.is_now:
            others.append(notice)
            continue
        doc_key = (k.connection_id, k.division, k.entity, k.document_id)
        if doc_key in reminders:
            # an invoice caught up late gets its latest reminder, not all of them at once
            await _cancel(decider, batch, reminders[doc_key], detail="superseded")
        reminders[doc_key] = notice
    out: list[tuple[Notice, Message]] = []
    for notice in [*others, *reminders.values()]:
        try:
            message = await _fire(decider, batch, notice, now)
        except MlcError as exc:  # one notice's trouble must not hold up the others
            log.warning("notice_deferred", rule=notice.key.rule, error_class=exc.error_class)
            await batch.settle(notice, "pending", due_at=now + _DEFER, detail=exc.error_class)
            continue
        if message is not None:
            out.append((notice, message))
            decider.count(notice.key.entity, outcome_of(message))
    return out


async def _cancel(
    decider: Decider,
    batch: DueNotices,
    notice: Notice,
    *,
    detail: str,
    message: Message | None = None,
) -> None:
    await batch.settle(notice, "cancelled", message=message, detail=detail)
    decider.count(notice.key.entity, "cancelled")


async def _fire(
    decider: Decider, batch: DueNotices, notice: Notice, now: datetime
) -> Message | None:
    k = notice.key
    structlog.contextvars.bind_contextvars(rule=k.rule, entity=k.entity)
    policy = decider.rulebook.for_connection(k.connection_id)
    rule, kind = policy.rule(k.rule), KINDS.get(k.entity)
    if rule is None or kind is None:
        await _cancel(decider, batch, notice, detail="rule_disabled")
        return None
    doc = await decider.exact.get_one(
        k.connection_id, k.division, kind.resource, kind.key, k.document_id, kind.select
    )
    if doc is None or rule.fact not in kind.facts_of(doc):
        await _cancel(decider, batch, notice, detail="document_changed")
        return None
    due = rule.timing.due(doc, now) if not rule.timing.is_now else None
    if due is not None and due > now:  # the due date moved (payment terms extended)
        await batch.settle(notice, "pending", due_at=due, detail="due_date_moved")
        return None
    if rule.requires_unpaid and not await unpaid(decider, k.connection_id, k.division, kind, doc):
        await _cancel(decider, batch, notice, detail="paid")
        await decider.invoice_paid(k.connection_id, k.division, k.document_id, kind.number(doc))
        return None
    source = decider.source(k.connection_id, kind, doc, k.document_id, k.division)
    outcome = await decider.decide(policy, kind, doc, rule, source, now, not_before=notice.due_at)
    if outcome is None:
        await _cancel(decider, batch, notice, detail="conditions_not_met")
        return None
    if isinstance(outcome, Held):
        await batch.settle(notice, "pending", due_at=outcome.until)
        return None
    if isinstance(outcome, NotificationSkipped):
        if outcome.reason == "opted_out":  # the chain ends for good
            await _cancel(decider, batch, notice, message=outcome, detail="opted_out")
            await decider.notices.cancel_document(
                k.connection_id, k.division, k.entity, k.document_id, "opted_out"
            )
        else:
            await batch.settle(notice, "skipped", message=outcome, detail=outcome.reason)
        return outcome
    await batch.settle(notice, "sent", due_at=now, message=outcome)
    return outcome


async def unpaid(
    decider: Decider, connection_id: str, division: int, kind: DocumentKind, doc: Record
) -> bool:
    """True while the invoice's receivable is open with an amount to pay; no open item
    found counts as paid (a careful reminder is never sent on doubt)."""
    document_id = doc.get(kind.key)
    rows = await decider.exact.get_all(
        connection_id,
        division,
        "cashflow/Receivables",
        "TransactionEntryID",
        UUID(str(document_id)),
        ["ID", "AmountDC", "IsFullyPaid", "Status"],
    )
    if not rows and kind.number(doc):
        rows = await decider.filtered.get_filtered(
            connection_id,
            division,
            "cashflow/Receivables",
            f"InvoiceNumber eq {int(str(kind.number(doc)))}"
            if str(kind.number(doc)).isdigit()
            else f"InvoiceNumber eq '{kind.number(doc)}'",
            ["ID", "AmountDC", "IsFullyPaid", "Status"],
        )
    return any(_open(row) for row in rows)


def _open(row: Record) -> bool:
    try:
        amount = Decimal(str(row.get("AmountDC") or 0))
    except InvalidOperation:
        amount = Decimal(0)
    return not row.get("IsFullyPaid") and row.get("Status") != 50 and amount > 0
