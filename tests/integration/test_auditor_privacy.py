"""The trail keeps as little of a person as it can: recipients as a keyed hash and a mask, texts
sealed, provider forms stripped, so that no number, address or message text is found anywhere
in the audit schema after sends with statuses; old trails are converted in place; retention
deletes what is too old (by hand or daily) and erasure forgets one person, each recorded in the
privacy log, each once; and the auditor does not start without its data key."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
import pytest_asyncio

from auditor import cli as audit_cli
from auditor import handlers, retention, schema
from auditor.adapters.trail import PostgresTrail
from auditor.personal import ERASED, PersonalData
from common import db
from common.contracts import (
    Channel,
    EmailEvent,
    ForgetContact,
    InboundSms,
    NotificationFailed,
    NotificationSent,
    Recipient,
    SendNotification,
    SourceDocument,
    SuppressionChanged,
    TwilioStatus,
    address_key,
)
from common.crypto import generate_key
from common.testing import eventually

pytestmark = pytest.mark.integration

Stack = Any  # conftest.Stack

MOBILE = "+31612345678"
EMAIL = "anouk.devries@example.com"
OTHER = "+31698765432"
OUR_NUMBER = "+3197010000000"
#: A message text with a first name and an amount: neither may be found in the schema.
BODY = "Beste Anouk, factuur {number} van Zonnebloem BV: 1.234,56 te betalen"
#: What must never be found in the audit schema in clear.
FORBIDDEN = (MOBILE, MOBILE[1:], EMAIL, EMAIL.split("@")[0], "Anouk", "1.234,56")
ACME, GLOBEX = "acme", "globex"


@dataclass
class Trail:
    store: PostgresTrail
    pool: asyncpg.Pool
    data: PersonalData
    key: str


@pytest_asyncio.fixture
async def trail(private_database_url: str) -> AsyncIterator[Trail]:
    async with db.pool(private_database_url, max_size=3) as pool:
        key = generate_key()
        data = PersonalData(key)
        await schema.migrate(pool, data)
        yield Trail(PostgresTrail(pool, data=data), pool, data, key)


def command(
    address: str,
    *,
    channel: Channel = "sms",
    connection_id: str = ACME,
    number: str = "F1",
    contact_id: UUID | None = None,
) -> SendNotification:
    return SendNotification(
        notification_id=uuid4(),
        idempotency_key=uuid4().hex,
        channel=channel,
        recipient=Recipient(address=address, contact_id=contact_id, name="Anouk de Vries"),
        template=f"{channel}_invoice_issued",
        content=BODY.format(number=number),
        source=SourceDocument(
            connection_id=connection_id,
            division=1,
            entity="SalesInvoices",
            id=uuid4(),
            number=number,
        ),
        fact="invoice_issued",
    )


def sms_form(sid: str, status: str, to: str = MOBILE) -> dict[str, str]:
    """A Twilio message status callback as ingress receives it."""
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "AccountSid": "AC" + "5" * 32,
        "To": to,
        "From": OUR_NUMBER,
        "Body": BODY.format(number="F1"),
        "ToCity": "Utrecht",
        "ToCountry": "NL",
    }


def call_form(sid: str, status: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "CallStatus": status,
        "Called": MOBILE,
        "To": MOBILE,
        "Caller": OUR_NUMBER,
        "From": OUR_NUMBER,
        "CalledCity": "Utrecht",
        "CallerName": "Zonnebloem BV",
    }


def twilio_status(sid: str, status: str, raw: dict[str, str], resource: str = "message"):
    return TwilioStatus(
        resource=resource,
        provider_id=sid,
        status=status,
        raw=raw,
        received_at=datetime.now(UTC),
    )


def email_event(message_id: str, event: str) -> EmailEvent:
    return EmailEvent(
        event=event,
        sg_event_id=uuid4().hex,
        sg_message_id=f"{message_id}.filter-1",
        email=EMAIL,
        received_at=datetime.now(UTC),
        raw={
            "email": EMAIL,
            "event": event,
            "ip": "192.0.2.1",
            "useragent": "Mozilla/5.0",
            "url": f"https://pay.example/F1?for={EMAIL}",
            "sg_message_id": f"{message_id}.filter-1",
            "reason": f"mailbox {EMAIL} full",
        },
    )


def inbound(sender: str, connection_id: str | None, *, days_ago: int = 0) -> InboundSms:
    return InboundSms(
        connection_id=connection_id,
        message_sid="SM" + uuid4().hex,
        from_number=sender,
        to_number=OUR_NUMBER,
        kind="stop",
        keyword="STOP",
        received_at=datetime.now(UTC) - timedelta(days=days_ago),
    )


def forget_request(
    addresses: list[str], *, contact_id: UUID | None = None, connection_id: str = ACME
) -> ForgetContact:
    return ForgetContact(
        request_id=uuid4(),
        connection_id=connection_id,
        contact_id=contact_id,
        addresses=addresses,
        requested_by="dpo@zonnebloem.example",
        requested_at=datetime.now(UTC),
    )


async def audit_dump(pool: asyncpg.Pool) -> str:
    """Every row of every table in schema ``audit``, every column as text (text, jsonb,
    arrays; the sealed text is bytea, whose hex could not hold a word anyway)."""
    tables = await pool.fetch(
        """SELECT table_name FROM information_schema.tables
           WHERE table_schema = 'audit' AND table_type = 'BASE TABLE'"""
    )
    rows: list[str] = []
    for table in tables:
        name = table["table_name"]
        found = await pool.fetch(f'SELECT t::text AS row FROM audit."{name}" t')  # noqa: S608
        rows += [f"{name}: {r['row']}" for r in found]
    return "\n".join(rows)


def assert_nothing_clear(dump: str) -> None:
    for clear in FORBIDDEN:
        assert clear not in dump, f"{clear!r} stored in clear"


async def sent_via(trail: Trail, c: SendNotification, provider_id: str) -> None:
    await handlers.record_requested(c, trail=trail.store)
    await handlers.record_outcome(
        NotificationSent(
            notification_id=c.notification_id,
            attempt=1,
            channel=c.channel,
            provider_id=provider_id,
        ),
        trail=trail.store,
    )


async def row_of(trail: Trail, c: SendNotification) -> asyncpg.Record:
    return await trail.pool.fetchrow(
        "SELECT * FROM audit.notifications WHERE notification_id = $1", c.notification_id
    )


# --- what is kept ----------------------------------------------------------------------------


async def test_a_recipient_is_kept_as_keyed_hash_and_mask_and_the_text_sealed_in_no_clear_column(
    trail: Trail,
):
    contact = uuid4()
    c = command(MOBILE, contact_id=contact)
    await handlers.record_requested(c, trail=trail.store)

    row = await row_of(trail, c)
    assert row["recipient_hash"] == trail.data.hash(MOBILE)
    assert row["recipient_masked"] == "+*********78"
    assert row["contact_id"] == contact
    assert trail.data.open(row["content_sealed"]) == c.content
    assert "recipient" not in row
    assert "content" not in row


async def test_twilios_error_text_is_kept_and_shown_with_the_number_masked_like_the_recipient(
    trail: Trail,
):
    c = command(MOBILE, number="F21211")
    await handlers.record_requested(c, trail=trail.store)
    # Twilio quotes the To it was given; here without "+", which the log masking leaves alone
    quoted = f"The 'To' number {MOBILE[1:]} is not a valid phone number."
    failed = NotificationFailed(
        notification_id=c.notification_id,
        attempt=1,
        channel="sms",
        error_class="permanent",
        error_code="21211",
        error=quoted,
        reason="invalid_number",
    )
    assert await trail.store.outcome("m-21211", failed)

    kept = await trail.pool.fetchval(
        "SELECT error FROM audit.attempts WHERE notification_id = $1", c.notification_id
    )
    assert kept == "The 'To' number *********78 is not a valid phone number."
    # a row kept before this masking is masked when it is read
    await trail.pool.execute(
        "UPDATE audit.attempts SET error = $2 WHERE notification_id = $1",
        c.notification_id,
        quoted,
    )
    (shown,) = await trail.store.document_trail(number="F21211")
    text = audit_cli.format_trail([shown])
    assert MOBILE[1:] not in text
    assert "21211: The 'To' number *********78 is not a valid phone number." in text


async def test_a_reveal_opens_the_text_and_still_shows_the_recipient_only_masked(trail: Trail):
    c = command(EMAIL, channel="email", number="F31")
    await handlers.record_requested(c, trail=trail.store)

    (shown,) = await trail.store.document_trail(number="F31")
    (revealed,) = await trail.store.document_trail(number="F31", reveal=True)

    assert "content" not in shown
    assert revealed["content"] == c.content
    assert shown["recipient"] == revealed["recipient"] == "a***@example.com"
    text = audit_cli.format_trail([revealed], reveal=True)
    assert f"text: {c.content}" in text
    assert EMAIL not in text


async def test_no_number_address_or_text_is_anywhere_in_the_audit_schema_after_sends_and_statuses(
    stack: Stack,
):
    sms = stack.command(MOBILE, content=BODY.format(number="F5001"), number="F5001")
    call = stack.command(MOBILE, content=BODY.format(number="F5002"), number="F5002")
    call = call.model_copy(update={"channel": "voice", "template": "voice_invoice_issued"})
    mail = stack.command(EMAIL, content=BODY.format(number="F5003"), number="F5003")
    mail = mail.model_copy(update={"channel": "email", "template": "email_invoice_issued"})
    for c in (sms, call, mail):
        await stack.send(c)
    sms_sid = (await until_state(stack, sms, "sent"))["provider_id"]
    call_sid = (await until_state(stack, call, "sent"))["provider_id"]
    await until_state(stack, mail, "failed")  # this stack's dispatcher sends no email
    for event in (
        twilio_status(sms_sid, "sent", sms_form(sms_sid, "sent")),
        twilio_status(sms_sid, "delivered", sms_form(sms_sid, "delivered")),
        twilio_status(call_sid, "completed", call_form(call_sid, "completed"), "call"),
        email_event("Xmsg5003", "open"),
        inbound(MOBILE, None),
        SuppressionChanged(
            action="added",
            connection_id="default",
            channel="sms",
            address_key=address_key(MOBILE),
            address_masked=MOBILE,  # a producer that forgot to mask
            reason="opted_out",
            source="inbound:STOP",
            requested_by=EMAIL,
            note=f"asked by {EMAIL} from {MOBILE}",
            occurred_at=datetime.now(UTC),
        ),
    ):
        await stack.publisher.publish(event)
    await eventually(
        lambda: stack.pool.fetchval(
            """SELECT (SELECT count(*) FROM audit.status_events)
                    + (SELECT count(*) FROM audit.inbound)
                    + (SELECT count(*) FROM audit.suppression_events)"""
        ),
        until=lambda n: n == 6,
        what="four statuses, one inbound message and one suppression recorded",
    )

    dump = await audit_dump(stack.pool)

    assert_nothing_clear(dump)
    assert sms_sid in dump  # the dump did read what was recorded
    assert call_sid in dump
    assert "+*********78" in dump
    assert "a***@example.com" in dump
    sealed = await stack.pool.fetchval(
        "SELECT content_sealed FROM audit.notifications WHERE notification_id = $1",
        sms.notification_id,
    )
    assert stack.data.open(sealed) == sms.content  # the text is kept, sealed


async def until_state(stack: Stack, c: SendNotification, state: str) -> dict[str, Any]:
    return await eventually(
        lambda: stack.notification(c.notification_id),
        until=lambda n: n["state"] == state,
        what=f"{c.channel} {state}",
    )


async def test_a_trail_written_before_006_is_converted_in_place_and_its_clear_columns_dropped(
    private_database_url: str,
):
    data = PersonalData(generate_key())
    async with db.pool(private_database_url, max_size=2) as pool:
        await migrate_up_to_005(pool)
        nid = uuid4()
        await pool.execute(
            """INSERT INTO audit.notifications (notification_id, channel, connection_id,
                   document_number, recipient, content, state)
               VALUES ($1, 'sms', 'acme', 'F77', $2, $3, 'sent')""",
            nid,
            MOBILE,
            BODY.format(number="F77"),
        )
        await pool.execute(
            """INSERT INTO audit.status_events (provider_id, status, raw, received_at)
               VALUES ('SM77', 'delivered', $1, now())""",
            sms_form("SM77", "delivered"),
        )

        applied = await schema.migrate(pool, data)
        again = await schema.migrate(pool, data)

        assert applied == [
            "006_personal_data.sql",
            "007_record_functions.sql",
            "008_record_many.sql",
            "009_outcome_one_write.sql",
            "010_record_many_single.sql",
            schema.CONVERSION,
        ]
        assert again == []
        row = await pool.fetchrow("SELECT * FROM audit.notifications")
        assert (row["recipient_hash"], row["recipient_masked"]) == (
            data.hash(MOBILE),
            "+*********78",
        )
        assert data.open(row["content_sealed"]) == BODY.format(number="F77")
        assert "recipient" not in row
        assert "content" not in row
        raw = await pool.fetchval("SELECT raw FROM audit.status_events")
        assert raw == {
            "MessageSid": "SM77",
            "SmsSid": "SM77",
            "MessageStatus": "delivered",
            "AccountSid": "AC" + "5" * 32,
        }
        assert_nothing_clear(await audit_dump(pool))


async def migrate_up_to_005(pool: asyncpg.Pool) -> None:
    """The audit schema as the auditor left it before 006, as db.migrate would have."""
    files = sorted(
        (f for f in resources.files("auditor").joinpath("migrations").iterdir()),
        key=lambda f: f.name,
    )
    async with pool.acquire() as connection:
        await connection.execute("CREATE SCHEMA audit")
        await connection.execute(
            "CREATE TABLE audit.schema_migrations (version text PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for file in files:
            if file.name.endswith(".sql") and file.name < "006":
                async with connection.transaction():
                    await connection.execute("SET LOCAL search_path TO audit")
                    await connection.execute(file.read_text())
                    await connection.execute(
                        "INSERT INTO audit.schema_migrations (version) VALUES ($1)", file.name
                    )


# --- retention -------------------------------------------------------------------------------


async def aged(trail: Trail, days: int, *, number: str) -> tuple[SendNotification, str]:
    """A notification sent with two statuses, all last touched ``days`` ago."""
    c, sid = command(MOBILE, number=number), "SM" + uuid4().hex
    await sent_via(trail, c, sid)
    for status in ("sent", "delivered"):
        await handlers.record_status(
            twilio_status(sid, status, sms_form(sid, status)), trail=trail.store
        )
    await trail.pool.execute(
        "UPDATE audit.notifications SET updated_at = now() - make_interval(days => $2)"
        " WHERE notification_id = $1",
        c.notification_id,
        days,
    )
    await trail.pool.execute(
        "UPDATE audit.status_events SET received_at = now() - make_interval(days => $2)"
        " WHERE provider_id = $1",
        sid,
        days,
    )
    return c, sid


async def count(pool: asyncpg.Pool, table: str) -> int:
    return int(await pool.fetchval(f"SELECT count(*) FROM audit.{table}"))  # noqa: S608


async def test_a_purge_deletes_what_is_older_with_its_attempts_statuses_and_inbound_and_logs_it(
    trail: Trail,
):
    old, _ = await aged(trail, 500, number="F-old")
    recent, _ = await aged(trail, 10, number="F-recent")
    stray = "SM" + uuid4().hex  # a callback for a message this trail never heard of, long ago
    await handlers.record_status(twilio_status(stray, "sent", {}), trail=trail.store)
    await trail.pool.execute(
        "UPDATE audit.status_events SET received_at = now() - interval '500 days'"
        " WHERE provider_id = $1",
        stray,
    )
    await trail.pool.execute(
        "UPDATE audit.statuses SET updated_at = now() - interval '500 days' WHERE provider_id = $1",
        stray,
    )
    await handlers.record_inbound(inbound(MOBILE, ACME, days_ago=500), trail=trail.store)
    await handlers.record_inbound(inbound(MOBILE, ACME, days_ago=10), trail=trail.store)

    done = await trail.store.purge(older_than=timedelta(days=400), requested_by="ops@zon.example")

    expected = {"notifications": 1, "attempts": 1, "status_events": 3, "statuses": 2, "inbound": 1}
    assert done["counts"] == expected
    assert await trail.store.notification(old.notification_id) is None
    assert await trail.store.notification(recent.notification_id) is not None
    (kept,) = await trail.store.document_trail(number="F-recent")
    assert [e["status"] for e in kept["status_history"]] == ["sent", "delivered"]
    assert (await count(trail.pool, "inbound"), await count(trail.pool, "attempts")) == (1, 1)
    log = await trail.pool.fetchrow("SELECT * FROM audit.privacy_log")
    assert (log["action"], log["requested_by"], log["counts"]) == (
        "purge",
        "o***@zon.example",
        expected,
    )
    assert log["older_than"] < datetime.now(UTC) - timedelta(days=399)


async def test_mlc_audit_purge_only_counts_without_yes_and_deletes_and_logs_with_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLC_AUDITOR_ADMIN_TOKEN", stack.admin_token)
    c = stack.command(OTHER, number="F-purge")
    await stack.send(c)
    await until_state(stack, c, "sent")
    await stack.pool.execute(
        "UPDATE audit.notifications SET updated_at = now() - interval '40 days'"
    )
    base = ["purge", "--older-than", "30", "--url", stack.auditor_url]

    counted = await mlc_audit_says(base)
    assert counted.startswith("would delete 1 notifications, 1 attempts")
    assert await count(stack.pool, "notifications") == 1
    assert await count(stack.pool, "privacy_log") == 0

    deleted = await mlc_audit_says([*base, "--yes", "--requested-by", "ops-jane"])
    assert deleted.startswith("deleted 1 notifications, 1 attempts")
    assert await count(stack.pool, "notifications") == 0
    log = await stack.pool.fetchrow("SELECT action, requested_by FROM audit.privacy_log")
    assert tuple(log) == ("purge", "ops-jane")


async def mlc_audit_says(argv: list[str]) -> str:
    parser = audit_cli.argparse.ArgumentParser()
    audit_cli.add_audit_arguments(parser)
    said: list[str] = []
    assert await asyncio.to_thread(audit_cli.run_audit, parser.parse_args(argv), said.append) == 0
    return "\n".join(said)


async def test_the_retention_loop_purges_on_every_run_and_records_each_run(trail: Trail):
    old, _ = await aged(trail, 401, number="F-401")
    stop = asyncio.Event()
    loop = asyncio.create_task(retention.purge_forever(trail.store, stop, days=400, interval=0.05))
    try:
        runs = await eventually(
            lambda: trail.pool.fetch(
                "SELECT requested_by, counts FROM audit.privacy_log ORDER BY id"
            ),
            until=lambda r: len(r) >= 2,
            what="two retention runs recorded",
        )
    finally:
        stop.set()
        await loop
    assert {r["requested_by"] for r in runs} == {retention.REQUESTED_BY}
    assert runs[0]["counts"]["notifications"] == 1
    assert runs[1]["counts"]["notifications"] == 0
    assert await trail.store.notification(old.notification_id) is None


# --- erasure ---------------------------------------------------------------------------------


async def test_erasure_by_address_empties_that_persons_rows_and_leaves_everyone_else_alone(
    trail: Trail,
):
    sms, mail = command(MOBILE, number="F1"), command(EMAIL, channel="email", number="F2")
    theirs = command(MOBILE, connection_id=GLOBEX, number="F3")  # another company's record
    someone = command(OTHER, number="F4")
    sids = {}
    for c in (sms, mail, theirs, someone):
        sids[c.notification_id] = "SM" + uuid4().hex
        await sent_via(trail, c, sids[c.notification_id])
        sid = sids[c.notification_id]
        await handlers.record_status(
            twilio_status(sid, "delivered", sms_form(sid, "delivered")), trail=trail.store
        )
    for sender, connection in ((MOBILE, ACME), (MOBILE, None), (MOBILE, GLOBEX), (OTHER, ACME)):
        await handlers.record_inbound(inbound(sender, connection), trail=trail.store)

    # as an operator types them: spaces in the number, capitals in the address
    counts = await trail.store.forget(forget_request(["+31 6 1234 5678", EMAIL.upper()]))

    assert counts == {"notifications": 2, "status_forms": 2, "inbound": 2}
    for c in (sms, mail):
        row = await row_of(trail, c)
        assert (row["recipient_masked"], row["recipient_hash"], row["content_sealed"]) == (
            ERASED,
            None,
            None,
        )
        assert row["erased_at"] is not None
        assert row["document_number"] == c.source.number  # its place in the trail stays
        form = await trail.pool.fetchval(
            "SELECT raw FROM audit.status_events WHERE provider_id = $1", sids[c.notification_id]
        )
        assert form == {}
    for c in (theirs, someone):
        row = await row_of(trail, c)
        assert trail.data.open(row["content_sealed"]) == c.content
    senders = await trail.pool.fetch("SELECT sender, connection_id FROM audit.inbound")
    assert sorted((r["sender"], r["connection_id"]) for r in senders) == [
        ("+*********32", ACME),
        ("+*********78", GLOBEX),
    ]
    (revealed,) = await trail.store.document_trail(number="F1", reveal=True)
    assert (revealed["recipient"], revealed["content"]) == (ERASED, ERASED)


async def test_erasure_by_contact_id_reaches_a_notification_to_an_address_not_named(
    trail: Trail,
):
    contact = uuid4()
    c = command("+31655554444", contact_id=contact)
    await handlers.record_requested(c, trail=trail.store)

    counts = await trail.store.forget(forget_request([], contact_id=contact))

    assert counts == {"notifications": 1, "status_forms": 0, "inbound": 0}
    row = await row_of(trail, c)
    assert (row["recipient_masked"], row["contact_id"], row["content_sealed"]) == (
        ERASED,
        None,
        None,
    )


async def test_an_erasure_request_is_recorded_once_masked_and_its_repeat_changes_nothing(
    trail: Trail,
):
    c = command(MOBILE)
    await handlers.record_requested(c, trail=trail.store)
    request = forget_request([MOBILE, EMAIL])

    first = await trail.store.forget(request)
    await handlers.record_forget(request, trail=trail.store)  # redelivered
    repeat = await trail.store.forget(request)

    assert first == {"notifications": 1, "status_forms": 0, "inbound": 0}
    assert repeat is None
    (log,) = await trail.pool.fetch("SELECT * FROM audit.privacy_log")
    assert (log["action"], log["request_id"], log["connection_id"]) == (
        "forget",
        request.request_id,
        ACME,
    )
    assert log["addresses_masked"] == ["+*********78", "a***@example.com"]
    assert log["requested_by"] == "d***@zonnebloem.example"
    assert log["counts"] == first
    assert_nothing_clear(await audit_dump(trail.pool))


async def test_an_erased_notification_stays_erased_when_its_send_command_comes_again(
    trail: Trail,
):
    c = command(MOBILE, contact_id=uuid4())
    await handlers.record_requested(c, trail=trail.store)
    await trail.store.forget(forget_request([MOBILE]))

    await handlers.record_requested(c, trail=trail.store)  # a DLQ replay of the command

    row = await row_of(trail, c)
    assert (row["recipient_masked"], row["recipient_hash"]) == (ERASED, None)
    assert (row["contact_id"], row["content_sealed"]) == (None, None)


async def test_rows_hashed_before_a_key_rotation_are_still_erased_while_the_old_key_is_listed(
    trail: Trail,
):
    c = command(MOBILE)
    await handlers.record_requested(c, trail=trail.store)
    rotated = PersonalData(f"{generate_key()},{trail.key}")  # new key first, old one kept
    after = PostgresTrail(trail.pool, data=rotated)

    counts = await after.forget(forget_request([MOBILE]))

    assert counts is not None
    assert counts["notifications"] == 1


async def test_a_forget_request_on_the_broker_erases_the_persons_trail(stack: Stack):
    to = "+31622223333"
    c = stack.command(to, number="F-forget")
    await stack.send(c)
    await until_state(stack, c, "sent")

    await stack.publisher.publish(forget_request([to], connection_id="default"))

    erased = await eventually(
        lambda: stack.notification(c.notification_id),
        until=lambda n: n["recipient"] == ERASED,
        what="the notification erased",
    )
    assert erased["erased_at"] is not None
    assert await count(stack.pool, "privacy_log") == 1


# --- the data key ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "said"),
    [
        (None, "MLC_AUDITOR_DATA_KEY is not set"),
        ("not-a-fernet-key", "MLC_AUDITOR_DATA_KEY: key 1 is not a Fernet key"),
    ],
)
def test_the_auditor_refuses_to_start_without_a_usable_data_key_in_one_line(
    key: str | None, said: str
):
    env = {k: v for k, v in os.environ.items() if k != "MLC_AUDITOR_DATA_KEY"}
    if key is not None:
        env["MLC_AUDITOR_DATA_KEY"] = key
    env["MLC_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:9/none"  # never reached
    started = subprocess.run(
        [str(Path(sys.executable).parent / "mlc-auditor")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert started.returncode != 0
    (line,) = started.stderr.strip().splitlines()
    assert line.startswith("mlc-auditor: cannot start: ")
    assert said in line
    if key is not None:
        assert key not in line
