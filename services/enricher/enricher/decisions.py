"""The enricher's policy applied: a document's facts and the connection's rules in, notices out.

::

    document event ─▶ facts ─▶ enabled rules whose conditions hold ─▶ per rule:
        notice row exists?  sent ──────────▶ publish the stored command again (same key)
                            pending/cancelled ─▶ nothing (the scheduler owns it / it ended)
        timing "now"  ─▶ audience ─▶ outside quiet hours and not urgent ─▶ pending (held)
                                  └▶ send (or skip: opted_out / no_contact) ─▶ row 'sent'
        timing "DueDate + 3 days" ─▶ pending row, due then

    scheduler pass (reminders.py) ─▶ pending rows due ─▶ the latest per document (older superseded)
        ─▶ rule still on, document and fact still there, invoice still unpaid
        ─▶ audience (an opt-out ends the whole chain) ─▶ quiet hours ─▶ send ─▶ row 'sent'

Recording the decision before the command is published is safe: a failed publish retries the
delivery, which finds the row 'sent' and publishes the stored command again, with the same
idempotency key; the dispatcher's claim makes that one send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import structlog
from prometheus_client import CollectorRegistry, Counter

from common.contracts import (
    Message,
    NotificationSkipped,
    SendNotification,
    SourceDocument,
)
from common.contracts.base import stable_id
from common.errors import PermanentError
from enricher.audience import Choice, Skip, choose
from enricher.customers import Customers
from enricher.documents import DocumentKind, exact_date
from enricher.facts import idempotency_key
from enricher.ports import (
    ExactReader,
    Notice,
    NoticeKey,
    NoticeStore,
    PreferenceStore,
    Record,
)
from enricher.reconcile import FilteredReader
from enricher.rulebook import RuleBook
from enricher.rules import LANGUAGES, Policy, Rule
from enricher.texts import Texts
from enricher.timing import next_allowed, zone_of_country

__all__ = ["Decider", "Held", "NoticeMetrics", "outcome_of"]

log = structlog.get_logger("enricher")

_INVOICES = ("SalesInvoices", "SalesEntries")


@dataclass(frozen=True)
class NoticeMetrics:
    """``mlc_enricher_notices_total{entity,outcome}``: what the rules decided. Outcomes: sent,
    republished (an edit of a notified document), scheduled, held (quiet hours), opted_out,
    no_contact, cancelled, suppressed (a pending notice ended by a suppressed address)."""

    notices: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> NoticeMetrics:
        return cls(
            Counter(
                "mlc_enricher_notices_total",
                "Notices decided by the rules, by document type and outcome",
                ["entity", "outcome"],
                registry=registry,
            )
        )

    def count(self, entity: str, outcome: str) -> None:
        self.notices.labels(entity=entity, outcome=outcome).inc()


@dataclass(frozen=True)
class Held:
    """Outside the recipient's quiet hours: the notice waits until ``until``."""

    until: datetime


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Decider:
    exact: ExactReader
    filtered: FilteredReader
    customers: Customers
    rulebook: RuleBook
    texts: Texts
    notices: NoticeStore
    preferences: PreferenceStore
    clock: Callable[[], datetime] = _utcnow
    metrics: NoticeMetrics | None = None
    _companies: dict[tuple[str, int], asyncio.Task[str]] = field(default_factory=dict)

    def count(self, entity: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.count(entity, outcome)

    # events ----------------------------------------------------------------------------------

    async def document_changed(
        self,
        connection_id: str,
        division: int,
        kind: DocumentKind,
        document_id: UUID,
        *,
        changed_before: datetime | None = None,
    ) -> list[Message]:
        """Apply every enabled rule of the document's current facts (as of a read that
        reflects every change made before ``changed_before``: the webhook's arrival)."""
        policy = self.rulebook.for_connection(connection_id)
        if not any(r.enabled and kind.entity in r.entity for r in policy.rules):
            log.info("no_rule", entity=kind.entity)
            return []
        doc = await self.exact.get_one(
            connection_id,
            division,
            kind.resource,
            kind.key,
            document_id,
            kind.select,
            changed_before=changed_before,
        )
        if doc is None:
            log.info("record_gone", entity=kind.entity)
            return []
        facts = kind.facts_of(doc)
        if not facts:
            log.info("no_business_fact", entity=kind.entity)
            return []
        now = self.clock()
        out: list[Message] = []
        known = await self.notices.of_document(connection_id, division, kind.entity, document_id)
        for fact in facts:
            for rule in policy.matching(kind.entity, fact):
                out += await self._apply(
                    policy,
                    connection_id,
                    kind,
                    doc,
                    document_id,
                    rule,
                    division,
                    now,
                    known.get(rule.name),
                )
        return out

    async def document_deleted(
        self, connection_id: str, division: int, kind: DocumentKind, document_id: UUID
    ) -> None:
        ended = await self.notices.cancel_document(
            connection_id, division, kind.entity, document_id, "document_deleted"
        )
        if ended:
            log.info("notices_cancelled", entity=kind.entity, reason="document_deleted", n=ended)

    async def invoice_paid(
        self, connection_id: str, division: int, invoice_id: UUID | None, number: str | None
    ) -> int:
        """End the invoice's pending reminders; returns how many were ended."""
        ended = await self.notices.cancel_invoice(
            connection_id,
            division,
            entities=_INVOICES,
            document_id=invoice_id,
            number=number,
            reason="paid",
        )
        log.info("reminders_stopped", reason="paid", n=ended)
        return ended

    # one rule --------------------------------------------------------------------------------

    async def _apply(
        self,
        policy: Policy,
        connection_id: str,
        kind: DocumentKind,
        doc: Record,
        document_id: UUID,
        rule: Rule,
        division: int,
        now: datetime,
        existing: Notice | None,
    ) -> list[Message]:
        source = self.source(connection_id, kind, doc, document_id, division)
        key = NoticeKey(source.connection_id, division, kind.entity, document_id, rule.name)
        if existing is not None and existing.state == "sent":
            self.count(kind.entity, "republished")
            return [existing.message] if existing.message else []
        if existing is not None and existing.state in ("pending", "cancelled"):
            return []
        number = kind.number(doc)
        if not rule.timing.is_now:
            due = rule.timing.due(doc, now)
            if due is None:
                log.info("no_due_date", rule=rule.name, field=rule.timing.field)
                return []
            await self.notices.record(key, "pending", due_at=due, number=number)
            self.count(kind.entity, "scheduled")
            log.debug("notice_scheduled", rule=rule.name, due_at=due.isoformat())
            return []
        outcome = await self.decide(policy, kind, doc, rule, source, now, not_before=None)
        if outcome is None:
            return []
        if isinstance(outcome, Held):
            await self.notices.record(key, "pending", due_at=outcome.until, number=number)
            self.count(kind.entity, "held")
            log.info("notice_held", rule=rule.name, until=outcome.until.isoformat())
            return []
        state = "sent" if isinstance(outcome, SendNotification) else "skipped"
        await self.notices.record(key, state, due_at=now, number=number, message=outcome)
        self.count(kind.entity, outcome_of(outcome))
        return [outcome]

    async def decide(
        self,
        policy: Policy,
        kind: DocumentKind,
        doc: Record,
        rule: Rule,
        source: SourceDocument,
        now: datetime,
        *,
        not_before: datetime | None,
    ) -> SendNotification | NotificationSkipped | Held | None:
        """The command (or skip, or hold) for one rule now; None when its conditions fail."""
        conn, division = source.connection_id, source.division
        account_id = kind.account(doc)
        customer = None
        if account_id is not None:
            customer = await self.customers.load(
                conn, division, account_id, contact_person=kind.contact(doc)
            )
        account = (customer.account if customer else None) or {}
        if not rule.when.hold(kind, doc, account):
            log.info("conditions_not_met", rule=rule.name)
            return None
        contacts = customer.contacts if customer else []
        ids = [UUID(str(c["ID"])) for c in contacts if c.get("ID")]
        preferences = await self.preferences.get_many(conn, ids) if ids else {}
        settings = policy.settings
        choice = choose(
            contacts,
            account,
            channels=rule.channels,
            document_contact=kind.contact(doc),
            role_words=policy.role_words(rule.audience.role),
            preference_of=preferences.get,
            honour_mailing_exclusion=settings.honour_mailing_exclusion,
            region=settings.country,
            language=settings.language,
            languages=LANGUAGES,
            time_zone_of=lambda country: zone_of_country(country, settings.time_zone),
        )
        if isinstance(choice, Skip):
            log.info("notice_skipped", rule=rule.name, reason=choice.reason)
            return NotificationSkipped(
                notification_id=stable_id(source, rule.notice, rule.name),
                source=source,
                fact=rule.notice,
                reason=choice.reason,
                detail=choice.detail,
                rule=rule.name,
            )
        if rule.urgency != "urgent":
            zone = choice.recipient.time_zone or settings.time_zone
            allowed = next_allowed(now, zone, settings.quiet_hours)
            if allowed > now:
                return Held(allowed)
        return await self._command(policy, kind, doc, rule, source, choice, not_before)

    async def _command(
        self,
        policy: Policy,
        kind: DocumentKind,
        doc: Record,
        rule: Rule,
        source: SourceDocument,
        choice: Choice,
        not_before: datetime | None,
    ) -> SendNotification:
        recipient, channel = choice.recipient, choice.channel
        company = await self.company(policy, source.connection_id, source.division)
        email = channel == "email"
        rendered = self.texts.render(
            rule.template,
            recipient.language or policy.settings.language,
            "email" if email else "text",
            name=recipient.name,
            company=company,
            number=source.number or "",
            amount=kind.amount(doc),
            currency=str(doc.get(kind.currency_field) or "EUR"),
            due_date=exact_date(doc.get("DueDate")),
            order_date=exact_date(doc.get("OrderDate")),
            delivery_date=exact_date(doc.get("DeliveryDate") or doc.get("ReceiptDate")),
            your_ref=doc.get("YourRef"),
        )
        key = idempotency_key(source, rule.notice, recipient.address, channel)
        return SendNotification(
            notification_id=stable_id("notification", key),
            idempotency_key=key,
            channel=channel,
            recipient=recipient,
            template=rule.template,
            content=rendered.email if email else rendered.text,
            subject=rendered.subject if email else None,
            source=source,
            fact=rule.notice,
            urgency=rule.urgency,
            not_before=not_before,
            rule=rule.name,
            encoding=None if email else rendered.encoding,
            segments=rendered.segments if channel == "sms" else None,
        )

    def source(
        self, connection_id: str, kind: DocumentKind, doc: Record, document_id: UUID, division: int
    ) -> SourceDocument:
        return SourceDocument(
            connection_id=connection_id,
            division=division,
            entity=kind.entity,
            id=document_id,
            number=kind.number(doc),
        )

    def forget_companies(self) -> None:
        """Read the divisions' names from Exact again on next use (a company renamed)."""
        self._companies.clear()

    async def company(self, policy: Policy, connection_id: str, division: int) -> str:
        """The company's name: the connection's rules file, else the division's name in Exact
        (``hrm/Divisions.Description``), read once per division: an invoicing run's
        concurrent handlers share the one read (its task) instead of each asking Exact."""
        if policy.settings.company_name:
            return policy.settings.company_name
        key = (connection_id, division)
        read = self._companies.get(key)
        if read is None:
            read = asyncio.get_running_loop().create_task(self._division_name(*key))
            self._companies[key] = read
        try:
            # shield: one caller giving up must not cancel the read the others wait for
            return await asyncio.shield(read)
        except Exception:
            if read.done() and self._companies.get(key) is read:
                del self._companies[key]  # a failed read is tried again by the next caller
            raise

    async def _division_name(self, connection_id: str, division: int) -> str:
        rows = await self.filtered.get_filtered(
            connection_id, division, "hrm/Divisions", f"Code eq {division}", ["Code", "Description"]
        )
        name = next((str(r["Description"]).strip() for r in rows if r.get("Description")), "")
        if not name:
            raise PermanentError(
                f"division {division} has no name in Exact: set settings.company_name in the "
                "connection's rules file",
                code="no_company_name",
            )
        return name


def outcome_of(message: Message) -> str:
    return message.reason if isinstance(message, NotificationSkipped) else "sent"
