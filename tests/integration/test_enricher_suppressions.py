"""A suppressed address ends the reminder chains that would have gone to it: the enricher's
``enricher.suppressions`` consumer, fed through the real broker, cancels the pending notices of
the documents that already sent to the address on that channel, and nothing else.

Each test has its own vhost (no other enricher competes for the queue) and its own database
(an install-wide suppression sweeps every connection's notices)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import aio_pika
import asyncpg
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from common import db, topology
from common.amqp import Publisher, run_consumer
from common.contracts import (
    INSTALL_SCOPE,
    Channel,
    SendNotification,
    SourceDocument,
    SuppressionChanged,
    address_key,
)
from common.metrics import ConsumerMetrics, make_registry
from common.testing.infra import unique
from common.testing.polling import eventually
from enricher import suppressions
from enricher.adapters.notices import NoticeKey, PostgresNotices
from enricher.decisions import NoticeMetrics
from enricher.rulebook import RuleBook

pytestmark = pytest.mark.integration

DUE = datetime(2026, 12, 1, 12, tzinfo=UTC)
ISSUED = "invoice-issued"
EMAIL, SMS, CALL = "invoice-overdue-email", "invoice-overdue-sms", "invoice-overdue-call"


@dataclass
class Harness:
    pool: asyncpg.Pool
    notices: PostgresNotices
    publisher: Publisher
    registry: CollectorRegistry
    rulebook: RuleBook
    rules_dir: Path
    published: int = 0

    async def chain(
        self, connection: str, channel: Channel, address: str, pending: tuple[str, ...]
    ) -> UUID:
        """An invoice whose ``invoice-issued`` went to ``address`` on ``channel``, with the
        reminders ``pending`` waiting."""
        document = uuid4()
        source = SourceDocument(
            connection_id=connection, division=7, entity="SalesInvoices", id=document
        )
        sent = SendNotification(
            notification_id=uuid4(),
            idempotency_key=uuid4().hex,
            channel=channel,
            recipient={"address": address},
            template="invoice_issued",
            content="Factuur 26000001",
            source=source,
            fact="invoice_issued",
            rule=ISSUED,
        )
        await self.notices.record(
            self.key(connection, document, ISSUED), "sent", due_at=DUE, number=None, message=sent
        )
        for rule in pending:
            await self.notices.record(
                self.key(connection, document, rule),
                "pending",
                due_at=DUE + timedelta(days=3),
                number=None,
            )
        return document

    @staticmethod
    def key(connection: str, document: UUID, rule: str) -> NoticeKey:
        return NoticeKey(connection, 7, "SalesInvoices", document, rule)

    async def suppress(
        self, connection: str, channel: Channel, address: str, reason: str
    ) -> SuppressionChanged:
        """Publish the addition as the dispatcher does and wait until the enricher acked it."""
        event = SuppressionChanged(
            action="added",
            connection_id=connection,
            channel=channel,
            address_key=address_key(address),
            address_masked="***",
            reason=reason,
            source="test",
            occurred_at=datetime.now(UTC),
        )
        await self.again(event)
        return event

    async def again(self, event: SuppressionChanged) -> None:
        await self.publisher.publish(event)
        self.published += 1
        await eventually(
            lambda: self.settled(), until=lambda n: n >= self.published, what="delivery settled"
        )
        assert self.settled("ack") == self.published  # neither retried nor parked

    def settled(self, outcome: str | None = None) -> float:
        outcomes = [outcome] if outcome else ["ack", "retry", "dead_letter"]
        return sum(
            self.registry.get_sample_value(
                "mlc_consumer_messages_total",
                {"queue": suppressions.QUEUE, "outcome": o},
            )
            or 0.0
            for o in outcomes
        )

    def suppressed(self) -> float:
        labels = {"entity": "SalesInvoices", "outcome": suppressions.OUTCOME}
        return self.registry.get_sample_value("mlc_enricher_notices_total", labels) or 0.0

    async def states(self, connection: str, document: UUID) -> dict[str, str]:
        return await self.notices.states(connection, "SalesInvoices", document)

    async def row(self, connection: str, document: UUID, rule: str) -> asyncpg.Record:
        return await self.pool.fetchrow(
            """SELECT state, detail, updated_at FROM enricher.notices
               WHERE connection_id = $1 AND document_id = $2 AND rule = $3""",
            connection,
            document,
            rule,
        )


@pytest_asyncio.fixture
async def harness(
    private_amqp_url: str, private_database_url: str, tmp_path: Path
) -> AsyncIterator[Harness]:
    """The enricher's suppressions consumer wired as app.py wires it, the default rules for
    every connection (a ``<connection>.yaml`` in ``rules_dir`` overrides them)."""
    async with db.pool(private_database_url) as pool:
        await db.migrate(pool, "enricher", "enricher")
        broker = await aio_pika.connect_robust(private_amqp_url)
        try:
            await topology.declare(await broker.channel())
            publisher = await Publisher.open(broker)
            registry = make_registry()
            notices, rulebook = PostgresNotices(pool), RuleBook(tmp_path)
            consumer = await run_consumer(
                await broker.channel(),
                suppressions.QUEUE,
                suppressions.routes(notices, rulebook, NoticeMetrics.create(registry)),
                publisher=publisher,
                metrics=ConsumerMetrics.create(registry),
            )
            yield Harness(pool, notices, publisher, registry, rulebook, tmp_path)
            await consumer.drain(5)
        finally:
            await broker.close()


async def test_a_suppressed_number_ends_its_sms_chain_and_leaves_other_chains_pending(harness):
    conn, other_conn = unique("conn"), unique("conn")
    # stored as written by hand, blanks and all: the key is of the normalised number
    to_it = await harness.chain(conn, "sms", "+31 6 1111 1111", (EMAIL, SMS, CALL))
    to_another = await harness.chain(conn, "sms", "+31622222222", (SMS,))
    other_connection = await harness.chain(other_conn, "sms", "+31611111111", (SMS,))

    await harness.suppress(conn, "sms", "+31611111111", "opted_out")

    # the SMS step ends; the email and the call (another channel, same number) stay pending
    assert await harness.states(conn, to_it) == {
        ISSUED: "sent",
        EMAIL: "pending",
        SMS: "cancelled",
        CALL: "pending",
    }
    assert (await harness.row(conn, to_it, SMS))["detail"] == "suppressed: opted_out"
    assert await harness.states(conn, to_another) == {ISSUED: "sent", SMS: "pending"}
    assert await harness.states(other_conn, other_connection) == {ISSUED: "sent", SMS: "pending"}
    assert harness.suppressed() == 1


async def test_an_install_wide_suppression_ends_the_chains_of_every_connection(harness):
    first, second, third = unique("conn"), unique("conn"), unique("conn")
    a = await harness.chain(first, "email", " Jan@Example.COM ", (EMAIL,))
    b = await harness.chain(second, "email", "jan@example.com", (EMAIL, SMS))
    elsewhere = await harness.chain(third, "email", "piet@example.com", (EMAIL,))

    await harness.suppress(INSTALL_SCOPE, "email", "JAN@example.com", "bounced")

    assert await harness.states(first, a) == {ISSUED: "sent", EMAIL: "cancelled"}
    assert await harness.states(second, b) == {ISSUED: "sent", EMAIL: "cancelled", SMS: "pending"}
    assert (await harness.row(second, b, EMAIL))["detail"] == "suppressed: bounced"
    assert await harness.states(third, elsewhere) == {ISSUED: "sent", EMAIL: "pending"}
    assert harness.suppressed() == 2


async def test_a_repeated_suppression_cancels_and_counts_nothing_more(harness):
    conn = unique("conn")
    document = await harness.chain(conn, "sms", "+31611111111", (EMAIL, SMS))
    event = await harness.suppress(conn, "sms", "+31611111111", "opted_out")
    cancelled = await harness.row(conn, document, SMS)

    await harness.again(event)  # a redelivery, or the dispatcher learning it twice
    await harness.suppress(conn, "sms", "+31611111111", "operator")

    assert await harness.row(conn, document, SMS) == cancelled  # not rewritten
    assert await harness.states(conn, document) == {
        ISSUED: "sent",
        EMAIL: "pending",
        SMS: "cancelled",
    }
    assert harness.suppressed() == 1


async def test_a_reminder_that_may_choose_another_channel_or_contact_stays_pending(harness):
    conn = unique("conn")
    (harness.rules_dir / f"{conn}.yaml").write_text(
        """
rules:
  - name: overdue-any-channel
    entity: [SalesInvoices]
    fact: invoice_issued
    audience: {party: customer, role: finance}
    channels: [sms, email]
    template: invoice_overdue
    timing: DueDate + 5 days
  - name: overdue-buyer-sms
    entity: [SalesInvoices]
    fact: invoice_issued
    audience: {party: customer, role: purchasing}
    channels: [sms]
    template: invoice_overdue
    timing: DueDate + 5 days
""",
        encoding="utf-8",
    )
    assert harness.rulebook.reload() == []
    rules = (SMS, "overdue-any-channel", "overdue-buyer-sms")
    document = await harness.chain(conn, "sms", "+31611111111", rules)

    await harness.suppress(conn, "sms", "+31611111111", "opted_out")

    # only the step bound to this channel and this contact ends; the dispatcher still
    # refuses the others if they come to the suppressed number
    assert await harness.states(conn, document) == {
        ISSUED: "sent",
        SMS: "cancelled",
        "overdue-any-channel": "pending",
        "overdue-buyer-sms": "pending",
    }
