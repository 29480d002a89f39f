"""The auditor's side of suppressions, email and voice: suppression changes are kept once and
shown masked (``mlc audit suppressions``, and in the trail of the notification that taught
them); a send the dispatcher skips as suppressed ends ``skipped``/``opted_out``; a call ends on
its answering machine result whatever the order of its callbacks; status checks never ask
about email; the counters say which channel each outcome belongs to."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from auditor import cli as audit_cli
from auditor import handlers, schema
from auditor.adapters.trail import (
    PostgresTrail,
    outcome_counter,
    status_counter,
    suppression_counter,
)
from auditor.personal import PersonalData
from auditor.status import FINAL_RANK, rank
from auditor.status_checks import due_checks
from common import db
from common.contracts import (
    INSTALL_SCOPE,
    Channel,
    NotificationSent,
    NotificationSkipped,
    Recipient,
    SendNotification,
    SourceDocument,
    SuppressionChanged,
    TwilioStatus,
    address_key,
)
from common.crypto import generate_key
from common.metrics import make_registry
from common.testing import eventually

pytestmark = pytest.mark.integration

Stack = Any  # conftest.Stack

EMAIL = "finance@example.com"
MOBILE = "+31612345678"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class Trail:
    store: PostgresTrail
    pool: asyncpg.Pool
    registry: CollectorRegistry

    def counted(self, metric: str, **labels: str) -> float:
        return self.registry.get_sample_value(metric, labels) or 0.0


@pytest_asyncio.fixture
async def trail(private_database_url: str) -> AsyncIterator[Trail]:
    """A PostgresTrail with the three counters the service gives it."""
    async with db.pool(private_database_url, max_size=2) as pool:
        data = PersonalData(generate_key())
        await schema.migrate(pool, data)
        registry = make_registry()
        store = PostgresTrail(
            pool,
            data=data,
            outcomes=outcome_counter(registry),
            statuses=status_counter(registry),
            suppressions=suppression_counter(registry),
        )
        yield Trail(store, pool, registry)


def command(channel: Channel, address: str, *, number: str = "F1") -> SendNotification:
    return SendNotification(
        notification_id=uuid4(),
        idempotency_key=uuid4().hex,
        channel=channel,
        recipient=Recipient(address=address),
        template=f"{channel}_invoice_issued",
        content=f"Invoice {number}: 121.00 due",
        source=SourceDocument(
            connection_id="c1", division=1, entity="SalesInvoices", id=uuid4(), number=number
        ),
        fact="invoice_issued",
    )


def suppression(
    action: str = "added",
    *,
    address: str = EMAIL,
    channel: Channel = "email",
    reason: str = "bounced",
    source: str = "sendgrid:bounce",
    connection_id: str = "c1",
    at: datetime = START,
    **extra: Any,
) -> SuppressionChanged:
    masked = "f***@example.com" if "@" in address else "+*********" + address[-2:]
    return SuppressionChanged(
        action=action,
        connection_id=connection_id,
        channel=channel,
        address_key=address_key(address),
        address_masked=masked,
        reason=reason,
        source=source,
        occurred_at=at,
        **extra,
    )


def suppressed_skip(c: SendNotification, reason: str = "bounced") -> NotificationSkipped:
    """What the dispatcher publishes for a send command whose address is suppressed."""
    return NotificationSkipped(
        notification_id=c.notification_id,
        source=c.source,
        fact=c.fact,
        reason="opted_out",
        detail=f"suppressed: {reason}",
    )


def sent(c: SendNotification, provider_id: str) -> NotificationSent:
    return NotificationSent(
        notification_id=c.notification_id, attempt=1, channel=c.channel, provider_id=provider_id
    )


def call_status(sid: str, status: str) -> TwilioStatus:
    return TwilioStatus(
        resource="call", provider_id=sid, status=status, raw={}, received_at=datetime.now(UTC)
    )


async def audit_cli_says(stack: Stack, *argv: str) -> str:
    """Run ``mlc audit <argv>`` against the stack's auditor, with the admin token."""
    settings = audit_cli.CliSettings(
        auditor_url=stack.auditor_url, auditor_admin_token=stack.admin_token
    )
    parser = audit_cli.argparse.ArgumentParser()
    audit_cli.add_audit_arguments(parser)
    said: list[str] = []
    code = await asyncio.to_thread(
        audit_cli.run_audit, parser.parse_args(list(argv)), said.append, settings
    )
    assert code == 0
    return "\n".join(said)


# --- suppression history ---------------------------------------------------------------------


async def test_a_suppression_published_twice_is_recorded_once_and_listed_masked_newest_first(
    stack: Stack,
):
    added = suppression("added", requested_by=None)
    lifted = suppression(
        "lifted",
        source="operator",
        requested_by="ops@example.com",
        note=f"customer asked by phone from {MOBILE}",
        at=START + timedelta(days=1),
    )
    for event in (added, added, lifted):  # the dispatcher's outbox relayed `added` twice
        await stack.publisher.publish(event)
    rows = await eventually(
        lambda: stack.pool.fetch("SELECT * FROM audit.suppression_events"),
        until=lambda r: len(r) == 2,
        what="two suppression changes recorded",
    )
    await asyncio.sleep(0.3)  # the duplicate copy has had its chance to land twice
    assert await stack.pool.fetchval("SELECT count(*) FROM audit.suppression_events") == 2
    assert {r["message_id"] for r in rows} == {added.message_id(), lifted.message_id()}

    text = await audit_cli_says(stack, "suppressions", "--connection", "c1")
    first, second = text.splitlines()
    assert first.split()[1:3] == ["lifted", "email"]  # newest first
    assert second.split()[1:3] == ["added", "email"]
    assert "f***@example.com" in first
    assert "(bounced, source sendgrid:bounce)" in second
    assert EMAIL not in text
    assert MOBILE not in text  # the operator's note is masked too
    assert MOBILE[-2:] in first
    assert "ops@example.com" not in text  # and so is an operator who signs with an address
    assert "by o***@example.com" in first

    raw = await audit_cli_says(stack, "suppressions", "--json", "--limit", "1")
    (only,) = json.loads(raw)
    assert only["action"] == "lifted"
    assert "address_key" not in only  # a hash of a number is as good as the number
    assert EMAIL not in raw


async def test_the_suppression_api_wants_the_admin_token(stack: Stack):
    client = audit_cli.AuditClient(stack.auditor_url, None)
    with pytest.raises(SystemExit, match="MLC_AUDITOR_ADMIN_TOKEN"):
        await asyncio.to_thread(client.suppressions, connection=None, limit=5)


async def test_a_connections_history_includes_install_wide_changes_and_no_other_connection(
    trail: Trail,
):
    ours = suppression(connection_id="c1", at=START)
    install = suppression(
        connection_id=INSTALL_SCOPE,
        channel="sms",
        address=MOBILE,
        reason="opted_out",
        source="inbound:STOP",
        at=START + timedelta(hours=1),
    )
    theirs = suppression(connection_id="c2", at=START + timedelta(hours=2))
    for event in (ours, install, theirs):
        assert await trail.store.suppression(event.message_id(), event)

    history = await trail.store.suppressions(connection_id="c1")

    assert [h["connection_id"] for h in history] == [INSTALL_SCOPE, "c1"]
    assert [h["connection_id"] for h in await trail.store.suppressions(limit=1)] == ["c2"]
    text = audit_cli.format_suppressions(history)
    assert "all connections" in text.splitlines()[0]


async def test_suppression_changes_are_counted_once_per_event_by_action_and_reason(
    trail: Trail,
):
    added = suppression(reason="spam_report", source="sendgrid:spamreport")
    assert await handlers.record_suppression(added, trail=trail.store) == []
    await handlers.record_suppression(added, trail=trail.store)  # redelivered
    await handlers.record_suppression(
        suppression("lifted", reason="spam_report", at=START + timedelta(hours=1)),
        trail=trail.store,
    )
    counter = "mlc_suppression_changes_total"
    assert trail.counted(counter, action="added", reason="spam_report") == 1
    assert trail.counted(counter, action="lifted", reason="spam_report") == 1


async def test_the_trail_of_the_notification_that_taught_a_suppression_shows_it(trail: Trail):
    c = command("email", EMAIL, number="F77")
    await handlers.record_requested(c, trail=trail.store)
    await handlers.record_outcome(sent(c, "Xmsg77"), trail=trail.store)
    bounce = suppression(notification_id=c.notification_id)
    await handlers.record_suppression(bounce, trail=trail.store)
    other = suppression(address="someone@example.com", at=START + timedelta(minutes=5))
    await handlers.record_suppression(other, trail=trail.store)  # learnt from nothing here

    (item,) = await trail.store.document_trail(number="F77")

    assert [(s["action"], s["reason"]) for s in item["suppressions"]] == [("added", "bounced")]
    text = audit_cli.format_trail([item])
    assert "suppression added from this notification: email f***@example.com (bounced" in text
    assert EMAIL not in text


# --- skips from the dispatcher ----------------------------------------------------------------


async def test_a_dispatcher_skip_after_the_send_command_ends_skipped_opted_out_for_good(
    trail: Trail,
):
    c = command("email", EMAIL)
    await handlers.record_requested(c, trail=trail.store)
    assert (await trail.store.notification(c.notification_id))["state"] == "requested"

    skip = suppressed_skip(c)
    await handlers.record_skipped(skip, trail=trail.store)
    await handlers.record_skipped(skip, trail=trail.store)  # redelivered
    await handlers.record_requested(c, trail=trail.store)  # a later copy of the command

    row = await trail.store.notification(c.notification_id)
    assert (row["state"], row["failure_reason"]) == ("skipped", "opted_out")
    failures = await trail.store.failures(reason="opted_out")
    assert [f["notification_id"] for f in failures] == [str(c.notification_id)]
    (item,) = await trail.store.document_trail(document_id=c.source.id)
    (attempt,) = item["attempts"]
    assert attempt["error"] == "opted_out: suppressed: bounced"
    assert "skipped (opted_out: suppressed: bounced)" in audit_cli.format_trail([item])
    counted = trail.counted(
        "mlc_notifications_total", channel="email", outcome="skipped", reason="opted_out"
    )
    assert counted == 1


async def test_a_skip_reported_for_a_notification_already_sent_leaves_it_sent(trail: Trail):
    c = command("sms", MOBILE)
    await handlers.record_requested(c, trail=trail.store)
    await handlers.record_outcome(sent(c, "SM" + "3" * 32), trail=trail.store)
    await handlers.record_skipped(suppressed_skip(c, "opted_out"), trail=trail.store)
    row = await trail.store.notification(c.notification_id)
    assert (row["state"], row["failure_reason"]) == ("sent", None)


async def test_an_enricher_skip_that_names_no_channel_is_counted_as_channel_none(trail: Trail):
    source = command("sms", MOBILE).source
    skip = NotificationSkipped(
        notification_id=uuid4(), source=source, fact="invoice_issued", reason="no_contact"
    )
    await handlers.record_skipped(skip, trail=trail.store)
    counted = trail.counted(
        "mlc_notifications_total", channel="none", outcome="skipped", reason="no_contact"
    )
    assert counted == 1


async def test_outcomes_are_counted_under_the_notifications_channel(trail: Trail):
    c = command("voice", MOBILE)
    await handlers.record_requested(c, trail=trail.store)
    older_producer = sent(c, "CA" + "4" * 32).model_copy(update={"channel": None})
    await handlers.record_outcome(older_producer, trail=trail.store)
    counted = trail.counted(
        "mlc_notifications_total", channel="voice", outcome="sent", reason="none"
    )
    assert counted == 1


# --- voice outcomes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "ends_on"),
    [
        (["answered", "completed"], "answered"),
        (["completed", "answered"], "answered"),
        (["voicemail", "completed"], "voicemail"),
        (["in-progress", "completed", "voicemail", "ringing"], "voicemail"),
    ],
)
async def test_a_call_ends_on_its_answering_machine_result_before_or_after_completed(
    trail: Trail, order: list[str], ends_on: str
):
    c = command("voice", MOBILE)
    sid = "CA" + uuid4().hex
    await handlers.record_requested(c, trail=trail.store)
    await handlers.record_outcome(sent(c, sid), trail=trail.store)
    for status in order:
        await handlers.record_status(call_status(sid, status), trail=trail.store)

    (item,) = await trail.store.document_trail(document_id=c.source.id)
    assert item["delivery_status"] == ends_on
    assert sorted(e["status"] for e in item["status_history"]) == sorted(order)
    counted = trail.counted("mlc_notification_statuses_total", channel="voice", status=ends_on)
    assert counted == 1


async def test_a_completed_call_counts_as_final_once_and_again_when_answered_follows(
    trail: Trail,
):
    sid = "CA" + uuid4().hex
    for status in ("completed", "completed", "answered", "completed"):
        await handlers.record_status(call_status(sid, status), trail=trail.store)
    statuses = "mlc_notification_statuses_total"
    # no notification row: the callback's resource names the channel
    assert trail.counted(statuses, channel="voice", status="completed") == 1
    assert trail.counted(statuses, channel="voice", status="answered") == 1


@pytest.mark.parametrize("outcome", ["busy", "no-answer", "failed", "canceled"])
async def test_an_unanswered_call_stays_a_final_outcome_below_answered(trail: Trail, outcome: str):
    assert rank(outcome) == rank("completed") == FINAL_RANK
    assert rank(outcome) < rank("answered") == rank("voicemail")
    sid = "CA" + uuid4().hex
    for status in ("ringing", outcome, "in-progress"):
        await handlers.record_status(call_status(sid, status), trail=trail.store)
    stored = await trail.pool.fetchrow("SELECT status, rank FROM audit.statuses")
    assert (stored["status"], stored["rank"]) == (outcome, FINAL_RANK)


# --- status checks ----------------------------------------------------------------------------


async def sent_long_ago(trail: Trail, channel: Channel, address: str, provider_id: str) -> UUID:
    """A notification sent an hour ago without any status since."""
    c = command(channel, address)
    await handlers.record_requested(c, trail=trail.store)
    await handlers.record_outcome(sent(c, provider_id), trail=trail.store)
    await trail.pool.execute(
        "UPDATE audit.notifications SET updated_at = now() - interval '1 hour'"
        " WHERE notification_id = $1",
        c.notification_id,
    )
    return c.notification_id


async def test_status_checks_ask_for_sms_and_calls_with_their_channel_but_never_email(
    trail: Trail,
):
    sms = await sent_long_ago(trail, "sms", MOBILE, "SM" + "5" * 32)
    voice = await sent_long_ago(trail, "voice", MOBILE, "CA" + "5" * 32)
    email = await sent_long_ago(trail, "email", EMAIL, "Xmsg5")

    checks = await due_checks(trail.pool, after_seconds=60, max_checks=3)

    assert {(c.notification_id, c.channel) for c in checks} == {(sms, "sms"), (voice, "voice")}
    untouched = await trail.store.notification(email)
    assert untouched["status_checks"] == 0


async def test_a_call_that_reached_answered_is_not_checked_again(trail: Trail):
    sid = "CA" + "6" * 32
    await sent_long_ago(trail, "voice", MOBILE, sid)
    await handlers.record_status(call_status(sid, "answered"), trail=trail.store)
    assert await due_checks(trail.pool, after_seconds=60, max_checks=3) == []
