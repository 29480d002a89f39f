"""End to end: every document type the default rules know reaches the right person on the right
channel, an anonymised contact is skipped, a contact's preference for email is honoured, and an
overdue invoice's reminders stop once it is paid."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
import pytest_asyncio

from common import batches
from common.contracts import PaymentReceived
from common.settings import SIMULATOR_DEFAULTS
from common.testing import eventually
from enricher.commands import contacts
from enricher.rules import QuietHours
from enricher.timing import next_allowed, zone_of_country
from token_keeper.settings import Settings as CliSettings

pytestmark = pytest.mark.e2e

DIVISION = int(SIMULATOR_DEFAULTS["exact_division"])  # type: ignore[call-overload]
#: The seeded division's name in the simulator: texts sign with it.
COMPANY = "ML Connector Demo B.V."


class Probe:
    """Every command and skip the enricher publishes, read from a queue of the test's own."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def drain(self) -> list[tuple[str, dict[str, Any]]]:
        while (message := await self.queue.get(fail=False, no_ack=True)) is not None:
            for body in batches.bodies(message.body, message.headers):
                self.seen.append((message.routing_key or "", json.loads(body)))
        return self.seen

    async def about(self, document_id: str) -> list[tuple[str, dict[str, Any]]]:
        await self.drain()
        return [(key, body) for key, body in self.seen if body["source"]["id"] == document_id]

    async def wait_for(self, document_id: str, routing_key: str) -> dict[str, Any]:
        found = await eventually(
            lambda: self.about(document_id),
            until=lambda seen: any(key == routing_key for key, _ in seen),
            timeout=30,
            what=f"{routing_key} for {document_id}",
        )
        return next(body for key, body in found if key == routing_key)


@pytest_asyncio.fixture
async def probe(pipeline) -> AsyncIterator[Probe]:  # type: ignore[no-untyped-def]
    channel = await pipeline.broker.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("mlc.commands", routing_key="notification.send.*")
    await queue.bind("mlc.events", routing_key="notification.skipped")
    yield Probe(queue)
    await channel.close()


async def customer(pipeline, name: str, **contact: Any) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    account = await pipeline.exact.create_account(Name=name, Country="NL", Language="NL")
    person = await pipeline.exact.create_contact(
        Account=account["ID"], IsMainContact=True, Country="NL", **contact
    )
    return account["ID"], person["ID"]


def mobile() -> str:
    return f"+3162{uuid.uuid4().int % 10_000_000:07d}"


async def test_an_issued_invoice_is_an_sms_signed_with_the_divisions_name(pipeline, probe):
    account, _ = await customer(pipeline, "Bakkerij Zon B.V.", FirstName="Sem", Mobile=mobile())
    draft = await pipeline.exact.create_invoice(amount=1210.0, account_id=account)
    await pipeline.exact.issue_invoice(draft["InvoiceID"])
    command = await probe.wait_for(draft["InvoiceID"], "notification.send.sms")
    assert command["content"].startswith("Beste Sem, factuur ")
    assert f"van {COMPANY} voor € 1.210,00" in command["content"]
    assert (command["rule"], command["encoding"], command["segments"]) == (
        "invoice-issued",
        "GSM-7",
        1,
    )


async def test_a_direct_sales_entry_is_an_sms_to_the_customer(pipeline, probe):
    number = mobile()
    account, _ = await customer(pipeline, "Slagerij Direct B.V.", FirstName="Do", Mobile=number)
    entry = await pipeline.exact.create(
        "SalesEntries",
        Customer=account,
        InvoiceNumber=26900001,
        AmountDC=60.5,
        AmountFC=60.5,
        DueDate=(datetime.now(UTC) + timedelta(days=14)).isoformat(),
        Status=20,
        Type=20,
    )
    command = await probe.wait_for(entry["EntryID"], "notification.send.sms")
    assert command["recipient"]["address"] == number
    assert "factuur 26900001" in command["content"]
    assert "€ 60,50" in command["content"]
    sms = await eventually(
        lambda: pipeline.twilio.messages(to=number),
        until=lambda m: len(m) == 1,
        timeout=30,
        what="the SMS at Twilio",
    )
    assert "26900001" in sms[0]["body"]


async def test_an_approved_sales_order_is_an_email_to_the_person_who_ordered(pipeline, probe):
    account, buyer = await customer(
        pipeline, "Horeca Order B.V.", FirstName="Olga", Email="olga@horeca.example",
        Mobile=mobile(),
    )  # fmt: skip
    order = await pipeline.exact.create(
        "SalesOrders",
        OrderedBy=account,
        InvoiceTo=account,
        OrderedByContactPerson=buyer,
        AmountFC=99.95,
        AmountDC=99.95,
        ApprovalStatus=0,
    )
    await pipeline.exact.update("SalesOrders", order["OrderID"], Description="awaiting approval")
    await pipeline.exact.update("SalesOrders", order["OrderID"], ApprovalStatus=2)
    command = await probe.wait_for(order["OrderID"], "notification.send.email")
    assert command["recipient"]["address"] == "olga@horeca.example"
    assert command["subject"] == f"Orderbevestiging {order['OrderNumber']} van {COMPANY}"
    assert "€ 99,95" in command["content"]
    # an edit of the confirmed order sends nothing new: at most the same command again
    await pipeline.exact.update("SalesOrders", order["OrderID"], Description="edited")
    await eventually(lambda: pipeline.depth("enricher.exact-events"), until=lambda n: n == 0)
    sends = [b for k, b in await probe.about(order["OrderID"]) if k.startswith("notification.send")]
    assert {b["notification_id"] for b in sends} == {command["notification_id"]}


async def test_a_purchase_order_goes_to_the_suppliers_sales_contact_in_their_language(
    pipeline, probe
):
    supplier = await pipeline.exact.create_account(
        Name="Mühle Lieferant GmbH", Country="DE", Language="DE", IsSupplier=True, IsSales=False
    )
    await pipeline.exact.create_contact(
        Account=supplier["ID"], FirstName="Karl", Email="karl@muehle.example",
        IsMainContact=True, Country="DE",
    )  # fmt: skip
    seller = await pipeline.exact.create_contact(
        Account=supplier["ID"], FirstName="Greta", Email="greta@muehle.example",
        JobTitleDescription="Vertrieb Innendienst", Country="DE", Language="DE",
    )  # fmt: skip
    po = await pipeline.exact.create(
        "PurchaseOrders", Supplier=supplier["ID"], AmountFC=1500.0, AmountDC=1500.0
    )
    command = await probe.wait_for(po["PurchaseOrderID"], "notification.send.email")
    assert command["recipient"]["contact_id"] == seller["ID"]
    assert command["recipient"]["language"] == "de"
    assert command["subject"] == f"Bestellung {po['OrderNumber']} von {COMPANY}"
    assert "1.500,00 €" in command["content"]


async def test_an_anonymised_contact_is_skipped_as_opted_out_and_gets_nothing(pipeline, probe):
    number = mobile()
    account, _ = await customer(
        pipeline, "Anoniem B.V.", FirstName="X", Mobile=number, IsAnonymised=True
    )
    draft = await pipeline.exact.create_invoice(amount=50.0, account_id=account)
    await pipeline.exact.issue_invoice(draft["InvoiceID"])
    skipped = await probe.wait_for(draft["InvoiceID"], "notification.skipped")
    assert (skipped["reason"], skipped["rule"]) == ("opted_out", "invoice-issued")
    # a repeated webhook may repeat the skip: the same fact, with the same id, never a send
    seen = await probe.about(draft["InvoiceID"])
    assert {k for k, _ in seen} == {"notification.skipped"}
    assert {b["notification_id"] for _, b in seen} == {skipped["notification_id"]}
    assert await pipeline.twilio.messages(to=number) == []


async def test_a_contact_who_prefers_email_gets_the_invoice_by_email(pipeline, probe, database_url):
    account, person = await customer(
        pipeline, "Voorkeur B.V.", FirstName="Eef", Mobile=mobile(), Email="eef@voorkeur.example"
    )
    args = argparse.Namespace(
        action="prefer", contact=uuid.UUID(person), channel="email", connection="default"
    )
    assert await contacts.run(CliSettings(database_url=database_url), args, print) == 0
    draft = await pipeline.exact.create_invoice(amount=75.0, account_id=account)
    await pipeline.exact.issue_invoice(draft["InvoiceID"])
    command = await probe.wait_for(draft["InvoiceID"], "notification.send.email")
    assert command["recipient"]["address"] == "eef@voorkeur.example"
    assert command["subject"].startswith("Factuur ")
    seen = await probe.about(draft["InvoiceID"])
    assert {k for k, _ in seen} == {"notification.send.email"}  # never the SMS the rule lists first
    assert {b["notification_id"] for _, b in seen} == {command["notification_id"]}


async def notice_states(database_url: str, document_id: str) -> dict[str, tuple[str, str | None]]:
    db = await asyncpg.connect(database_url)
    try:
        rows = await db.fetch(
            "SELECT rule, state, detail FROM enricher.notices WHERE document_id = $1",
            uuid.UUID(document_id),
        )
    finally:
        await db.close()
    return {row["rule"]: (row["state"], row["detail"]) for row in rows}


async def test_an_overdue_invoice_gets_an_email_reminder_and_no_sms_once_paid(
    pipeline, probe, database_url
):
    number = mobile()
    account, _ = await customer(
        pipeline, "Laat Betaler B.V.", FirstName="Lot", Mobile=number, Email="lot@laat.example"
    )
    # due three days ago: the email reminder is due now, the SMS (e2e rules) 15 seconds later
    due = datetime.now(UTC) - timedelta(days=3)
    draft = await pipeline.exact.create_invoice(
        amount=300.0, account_id=account, DueDate=due.isoformat()
    )
    invoice_id = draft["InvoiceID"]
    issued = await pipeline.exact.issue_invoice(invoice_id)
    reminder = await probe.wait_for(invoice_id, "notification.send.email")
    assert reminder["rule"] == "invoice-overdue-email"
    assert reminder["subject"].startswith("Herinnering: factuur")
    assert reminder["recipient"]["address"] == "lot@laat.example"
    states = await notice_states(database_url, invoice_id)
    assert states["invoice-overdue-sms"][0] == "pending"

    # the customer pays; reconciliation reports it as it would find it on Receivables
    await pipeline.exact.pay_invoice(invoice_id)
    channel = await pipeline.broker.channel(publisher_confirms=True)
    exchange = await channel.get_exchange("mlc.events")
    payment = PaymentReceived(
        connection_id="default",
        division=DIVISION,
        receivable_id=uuid.uuid4(),
        invoice_id=uuid.UUID(invoice_id),
        invoice_number=str(issued["InvoiceNumber"]),
        amount=300.0,
        currency="EUR",
    )
    await exchange.publish(
        aio_pika.Message(payment.model_dump_json().encode(), type=payment.routing_key),
        routing_key=payment.routing_key,
    )
    await channel.close()
    states = await eventually(
        lambda: notice_states(database_url, invoice_id),
        until=lambda s: s["invoice-overdue-sms"][0] == "cancelled",
        timeout=30,
        what="the SMS reminder cancelled",
    )
    assert states["invoice-overdue-sms"] == ("cancelled", "paid")
    # well past the SMS's due moment, nothing more was sent about the invoice
    await eventually(
        lambda: datetime.now(UTC), until=lambda now: now > due + timedelta(days=3, seconds=17)
    )
    sms_rules = [b["rule"] for k, b in await probe.about(invoice_id) if k.endswith(".sms")]
    assert set(sms_rules) == {"invoice-issued"}  # the invoice itself; no reminder by SMS
    texts = await pipeline.twilio.messages(to=number)
    assert [m["body"].startswith("Beste Lot, factuur") for m in texts] == [True]


async def test_sighup_reloads_the_rules_and_the_enricher_keeps_running(pipeline):
    process = pipeline.stack.processes["enricher"]
    log = pipeline.stack.log_dir / "enricher.log"
    before = log.read_text(errors="replace").count("rules_reloaded")
    process.send_signal(signal.SIGHUP)
    await eventually(
        lambda: log.read_text(errors="replace").count("rules_reloaded"),
        until=lambda n: n == before + 1,
        what="rules reloaded",
    )
    assert process.returncode is None
    ready = await pipeline.http.get(f"{pipeline.stack.url('enricher')}/readyz")
    assert ready.status_code == 200


#: Countries with one time zone, spread around the clock: one of them is at night now.
NIGHT_CANDIDATES = ("NL", "IS", "AE", "IN", "JP", "FJ", "TO", "PE", "JM", "PA", "CV", "GE")


def country_at_night(now: datetime) -> tuple[str, datetime]:
    """A country where it is outside the default window now, and when its window opens."""
    for country in NIGHT_CANDIDATES:
        zone = zone_of_country(country, "UTC")
        opens = next_allowed(now, zone, QuietHours())
        if opens > now + timedelta(minutes=5):
            return country, opens
    raise AssertionError("no candidate country is at night")  # pragma: no cover


async def test_a_normal_message_at_night_in_the_recipients_zone_is_held_until_morning(
    pipeline, probe, database_url
):
    country, opens = country_at_night(datetime.now(UTC))
    supplier = await pipeline.exact.create_account(
        Name="Night Supplies Ltd", Country=country, Language="EN", IsSupplier=True
    )
    await pipeline.exact.create_contact(
        Account=supplier["ID"], FirstName="Nia", Email="nia@night.example", Country=country,
        IsMainContact=True, JobTitleDescription="Accounts",
    )  # fmt: skip
    entry = await pipeline.exact.create(
        "PurchaseEntries", Supplier=supplier["ID"], YourRef="NS-1", AmountFC=80.0, AmountDC=80.0
    )
    states = await eventually(
        lambda: notice_states(database_url, entry["EntryID"]),
        until=lambda s: "purchase-invoice-received" in s,
        timeout=30,
        what="the receipt notice decided",
    )
    assert states["purchase-invoice-received"] == ("pending", None)
    db = await asyncpg.connect(database_url)
    try:
        due = await db.fetchval(
            "SELECT due_at FROM enricher.notices WHERE document_id = $1",
            uuid.UUID(entry["EntryID"]),
        )
    finally:
        await db.close()
    assert due == opens.replace(second=0, microsecond=0)  # 08:00 or 10:00 there
    assert await probe.about(entry["EntryID"]) == []  # nothing sent in the night


async def restart_enricher(pipeline, while_down) -> None:  # type: ignore[no-untyped-def]
    """Stop the enricher (SIGTERM, as a deploy would), run ``while_down``, start it again."""
    stack = pipeline.stack
    process = stack.processes["enricher"]
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 30) == 0
    await while_down()
    # Up to three starts, as an orchestrator would restart it: a database shared with other
    # test runs may refuse a new connection for a moment ("too many clients").
    for attempt in range(3):
        log = (stack.log_dir / "enricher.log").open("ab")
        stack.processes["enricher"] = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "mlc-enricher"),
            env=stack.env("enricher"),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        try:
            await stack.wait_ready("enricher", timeout=60)
            return
        except RuntimeError:
            if attempt == 2 or stack.processes["enricher"].returncode is None:
                raise
            # the failed start exited on its own; it is replaced, not left running
            await asyncio.sleep(2)


async def test_a_reminder_due_while_the_enricher_was_down_is_sent_once_after_restart(
    pipeline, probe, database_url
):
    account, _ = await customer(
        pipeline, "Herstart B.V.", FirstName="Hein", Mobile=mobile(), Email="hein@herstart.example"
    )
    # the email reminder falls due 8 seconds from now
    due = datetime.now(UTC) - timedelta(days=3) + timedelta(seconds=8)
    draft = await pipeline.exact.create_invoice(
        amount=90.0, account_id=account, DueDate=due.isoformat()
    )
    invoice_id = draft["InvoiceID"]
    await pipeline.exact.issue_invoice(invoice_id)
    await eventually(
        lambda: notice_states(database_url, invoice_id),
        until=lambda s: s.get("invoice-overdue-email", ("",))[0] == "pending",
        what="the reminder scheduled",
    )

    async def past_due() -> None:
        # still waiting when the enricher stopped: the restart is what sends it
        assert (await notice_states(database_url, invoice_id))["invoice-overdue-email"][0] == (
            "pending"
        )
        await eventually(
            lambda: datetime.now(UTC),
            until=lambda now: now > due + timedelta(days=3, seconds=1),
            timeout=30,
        )

    await restart_enricher(pipeline, past_due)
    reminder = await probe.wait_for(invoice_id, "notification.send.email")
    assert reminder["rule"] == "invoice-overdue-email"
    states = await notice_states(database_url, invoice_id)
    assert states["invoice-overdue-email"][0] == "sent"
    reminders = [
        b for k, b in await probe.about(invoice_id) if b["rule"] == "invoice-overdue-email"
    ]
    assert {b["notification_id"] for b in reminders} == {reminder["notification_id"]}
