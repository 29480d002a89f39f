"""The policy applied with fakes: one notice per fact and rule, the escalation schedule, reminders
that stop on payment or opt-out, quiet hours holding a message, preferences and roles."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from policy_fakes import NOON, FakeFiltered, FakeNotices, FakePreferences, decider
from prometheus_client import CollectorRegistry

from common.contracts import (
    ExactWebhookReceived,
    NotificationSkipped,
    PaymentReceived,
    SendNotification,
)
from common.errors import PermanentError
from enricher.adapters.notices import Notice
from enricher.decisions import NoticeMetrics
from enricher.documents import KINDS
from enricher.handlers import handle_exact_event, payment_received
from enricher.reminders import fire_due

ACCOUNT = UUID("11111111-1111-4111-8111-111111111111")
MAIN = UUID("22222222-2222-4222-8222-222222222222")
BUYER = UUID("33333333-3333-4333-8333-333333333333")
SUPPLIER = UUID("44444444-4444-4444-8444-444444444444")
REP = UUID("55555555-5555-4555-8555-555555555555")
DUE = datetime(2026, 12, 14, tzinfo=UTC)


def ms(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)})/"


class FakeExact:
    """Documents by resource and key, customers, and receivables by invoice."""

    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}
        self.accounts = {
            str(ACCOUNT): {"ID": str(ACCOUNT), "MainContact": str(MAIN), "Country": "NL",
                           "Language": "NL"},
            str(SUPPLIER): {"ID": str(SUPPLIER), "Country": "DE", "Language": "DE"},
        }  # fmt: skip
        self.contacts = {
            str(ACCOUNT): [
                {"ID": str(MAIN), "FirstName": "Anna", "Mobile": "+31612345678",
                 "Email": "anna@klant.example", "IsMainContact": True},
                {"ID": str(BUYER), "FirstName": "Bram", "JobTitleDescription": "Inkoper",
                 "Email": "bram@klant.example"},
            ],
            str(SUPPLIER): [
                {"ID": str(REP), "FirstName": "Greta", "Email": "greta@lieferant.example",
                 "Mobile": "0151 23456789", "Country": "DE", "JobTitleDescription": "Vertrieb"},
            ],
        }  # fmt: skip
        self.open_items: dict[str, bool] = {}
        self.reads: list[str] = []

    async def get_one(
        self, connection_id, division, resource, key_field, key, select, changed_before=None
    ):  # type: ignore[no-untyped-def]
        self.reads.append(resource)
        if resource == "crm/Accounts":
            return self.accounts.get(str(key))
        return self.docs.get(str(key))

    async def get_all(
        self, connection_id, division, resource, field, value, select, changed_before=None
    ):  # type: ignore[no-untyped-def]
        self.reads.append(resource)
        if resource == "crm/Contacts":
            return self.contacts.get(str(value), [])
        if resource == "cashflow/Receivables":
            if str(value) not in self.open_items:
                return []
            paid = not self.open_items[str(value)]
            return [{"ID": str(uuid4()), "AmountDC": 1210.0, "IsFullyPaid": paid,
                     "Status": 50 if paid else 20}]  # fmt: skip
        raise AssertionError(resource)


def invoice(exact: FakeExact, amount: float = 1210.0, **fields: object) -> UUID:
    key = uuid4()
    exact.docs[str(key)] = {
        "InvoiceID": str(key), "InvoiceNumber": 26000001, "InvoiceTo": str(ACCOUNT),
        "Status": 50, "Type": 8020, "AmountFC": amount, "Currency": "EUR", "DueDate": ms(DUE),
        **fields,
    }  # fmt: skip
    exact.open_items[str(key)] = True
    return key


class Batch:
    """A DueBatch over the fake notice store."""

    def __init__(self, notices: FakeNotices, now: datetime) -> None:
        self.store = notices
        self.notices = sorted(
            (n for n in notices.rows.values() if n.state == "pending" and n.due_at <= now),
            key=lambda n: n.due_at,
        )

    async def settle(self, notice: Notice, state, *, due_at=None, message=None, detail=None):  # type: ignore[no-untyped-def]
        await self.store.record(
            notice.key,
            state,
            due_at=due_at or notice.due_at,
            number=notice.document_number,
            message=message,
            detail=detail,
        )


async def fire(exact: FakeExact, cache, notices: FakeNotices, now: datetime, **kw) -> list:  # type: ignore[no-untyped-def]
    d = decider(exact, cache, notices=notices, now=now, **kw)
    return [message for _, message in await fire_due(d, Batch(notices, now))]


async def test_an_issued_invoice_sends_now_and_schedules_three_reminders_at_due_plus_3_10_20(
    cache,
):
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact)
    out = await decider(exact, cache, notices=notices).document_changed(
        "default", 1, KINDS["SalesInvoices"], key
    )
    (command,) = out
    assert isinstance(command, SendNotification)
    assert (command.channel, command.rule, command.fact) == (
        "sms",
        "invoice-issued",
        "invoice_issued",
    )
    assert "Bakkerij Demo B.V." in command.content  # the division's name, not a setting
    assert (command.encoding, command.segments) == ("GSM-7", 1)
    due = {k.rule: (n.state, n.due_at) for k, n in notices.rows.items()}
    assert due == {
        "invoice-issued": ("sent", NOON),
        "invoice-overdue-email": ("pending", DUE + timedelta(days=3)),
        "invoice-overdue-sms": ("pending", DUE + timedelta(days=10)),
        "invoice-overdue-call": ("pending", DUE + timedelta(days=20)),
    }


async def test_a_later_edit_republishes_the_same_command_and_schedules_nothing_new(cache):
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact)
    d = decider(exact, cache, notices=notices)
    (first,) = await d.document_changed("default", 1, KINDS["SalesInvoices"], key)
    exact.docs[str(key)]["Description"] = "edited"
    exact.contacts[str(ACCOUNT)][0]["Mobile"] = "+31698765432"  # even with a new number
    (again,) = await d.document_changed("default", 1, KINDS["SalesInvoices"], key)
    assert again == first
    assert len(notices.rows) == 4


async def test_each_reminder_goes_on_its_channel_when_due_and_only_while_unpaid(cache):
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact)
    await decider(exact, cache, notices=notices).document_changed(
        "default", 1, KINDS["SalesInvoices"], key
    )
    day = DUE.replace(hour=11)
    assert await fire(exact, cache, notices, day + timedelta(days=2)) == []
    (email,) = await fire(exact, cache, notices, day + timedelta(days=3))
    assert (email.channel, email.rule, email.fact) == (
        "email", "invoice-overdue-email", "invoice_issued:invoice-overdue-email"
    )  # fmt: skip
    assert email.subject.startswith("Herinnering: factuur 26000001")
    assert email.not_before == DUE + timedelta(days=3)
    (sms,) = await fire(exact, cache, notices, day + timedelta(days=10))
    assert (sms.channel, sms.recipient.address) == ("sms", "+31612345678")
    assert await fire(exact, cache, notices, day + timedelta(days=10)) == []  # never twice
    exact.open_items[str(key)] = False  # paid between the SMS and the call
    assert await fire(exact, cache, notices, day + timedelta(days=20)) == []
    assert notices.states()["invoice-overdue-call"] == "cancelled"


async def test_a_due_date_moved_later_moves_the_reminder_with_it(cache):
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact)
    await decider(exact, cache, notices=notices).document_changed(
        "default", 1, KINDS["SalesInvoices"], key
    )
    exact.docs[str(key)]["DueDate"] = ms(DUE + timedelta(days=30))  # terms extended
    assert await fire(exact, cache, notices, DUE + timedelta(days=3, hours=11)) == []
    moved = {k.rule: n.due_at for k, n in notices.rows.items()}
    assert moved["invoice-overdue-email"] == DUE + timedelta(days=33)


async def test_a_payment_ends_every_pending_reminder_of_the_invoice(cache):
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact)
    d = decider(exact, cache, notices=notices)
    await d.document_changed("default", 1, KINDS["SalesInvoices"], key)
    assert await d.invoice_paid("default", 1, None, "26000001") == 3
    assert await fire(exact, cache, notices, DUE + timedelta(days=30)) == []
    assert set(notices.states().values()) == {"sent", "cancelled"}


async def test_an_invoice_caught_up_late_gets_only_its_latest_reminder(cache):
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact)
    late = DUE + timedelta(days=25, hours=11)
    await decider(exact, cache, notices=notices, now=late).document_changed(
        "default", 1, KINDS["SalesInvoices"], key
    )
    (call,) = await fire(exact, cache, notices, late)
    assert (call.channel, call.rule) == ("voice", "invoice-overdue-call")
    assert notices.states()["invoice-overdue-email"] == "cancelled"


async def test_the_call_is_only_for_invoices_above_the_threshold(cache):
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact, amount=120.0)
    await decider(exact, cache, notices=notices).document_changed(
        "default", 1, KINDS["SalesInvoices"], key
    )
    assert await fire(exact, cache, notices, DUE + timedelta(days=20, hours=11)) == []
    assert notices.states()["invoice-overdue-call"] == "cancelled"


async def test_a_contact_who_becomes_anonymised_ends_the_chain_with_opted_out(cache):
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact)
    await decider(exact, cache, notices=notices).document_changed(
        "default", 1, KINDS["SalesInvoices"], key
    )
    exact.accounts[str(ACCOUNT)]["IsAnonymised"] = True
    (skip,) = await fire(exact, cache, notices, DUE + timedelta(days=3, hours=11))
    assert isinstance(skip, NotificationSkipped)
    assert skip.reason == "opted_out"
    assert set(notices.states().values()) == {"sent", "cancelled"}


async def test_a_night_time_invoice_is_held_until_the_window_opens_then_sent(cache):
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact)
    night = datetime(2026, 12, 2, 22, 30, tzinfo=UTC)  # 23:30 in Amsterdam
    out = await decider(exact, cache, notices=notices, now=night).document_changed(
        "default", 1, KINDS["SalesInvoices"], key
    )
    assert out == []
    morning = datetime(2026, 12, 3, 7, tzinfo=UTC)  # 08:00 in Amsterdam
    assert notices.states()["invoice-issued"] == "pending"
    (held,) = await fire(exact, cache, notices, morning)
    assert (held.channel, held.not_before) == ("sms", morning)


async def test_a_confirmed_sales_order_goes_to_the_orderer_by_email_once(cache):
    exact, notices = FakeExact(), FakeNotices()
    key = uuid4()
    exact.docs[str(key)] = {
        "OrderID": str(key), "OrderNumber": 5, "OrderedBy": str(ACCOUNT),
        "OrderedByContactPerson": str(BUYER), "ApprovalStatus": 0, "Status": 12,
        "AmountFC": 99.5, "Currency": "EUR",
    }  # fmt: skip
    d = decider(exact, cache, notices=notices)
    assert await d.document_changed("default", 1, KINDS["SalesOrders"], key) == []  # awaiting
    exact.docs[str(key)]["ApprovalStatus"] = 2
    (command,) = await d.document_changed("default", 1, KINDS["SalesOrders"], key)
    assert (command.channel, command.recipient.contact_id) == ("email", BUYER)
    assert "€ 99,50" in command.content
    exact.docs[str(key)]["Status"] = 20  # partly delivered: an edit, not a new fact
    assert await d.document_changed("default", 1, KINDS["SalesOrders"], key) == [command]


async def test_a_purchase_order_goes_to_the_suppliers_sales_contact_in_german(cache):
    exact = FakeExact()
    key = uuid4()
    exact.docs[str(key)] = {
        "PurchaseOrderID": str(key), "OrderNumber": 7, "Supplier": str(SUPPLIER),
        "SupplierContact": None, "ApprovalStatus": 1, "OrderStatus": 10, "AmountFC": 10.0,
        "Currency": "EUR",
    }  # fmt: skip
    (command,) = await decider(exact, cache).document_changed(
        "default", 1, KINDS["PurchaseOrders"], key
    )
    assert (command.channel, command.recipient.contact_id) == ("email", REP)
    assert command.recipient.language == "de"
    assert command.subject == "Bestellung 7 von Bakkerij Demo B.V."


async def test_a_stored_preference_for_email_wins_over_the_rules_sms(cache):
    exact = FakeExact()
    key = invoice(exact)
    (command,) = await decider(
        exact, cache, preferences=FakePreferences({str(MAIN): "email"})
    ).document_changed("default", 1, KINDS["SalesInvoices"], key)
    assert (command.channel, command.recipient.address) == ("email", "anna@klant.example")
    assert command.subject == "Factuur 26000001 van Bakkerij Demo B.V."


async def test_disabled_rules_read_nothing_from_exact(cache):
    exact = FakeExact()
    assert (
        await decider(exact, cache).document_changed(
            "default", 1, KINDS["PurchaseEntries"], uuid4()
        )
        == []
    )
    assert exact.reads == []


async def test_the_company_name_in_the_rules_file_wins_and_no_name_at_all_is_refused(
    cache, tmp_path: Path
):
    exact = FakeExact()
    rules = tmp_path / "default.yaml"
    rules.write_text("settings:\n  company_name: Eigen Naam B.V.\n")
    filtered = FakeFiltered(company="")
    (command,) = await decider(exact, cache, rules=rules, filtered=filtered).document_changed(
        "default", 1, KINDS["SalesInvoices"], invoice(exact)
    )
    assert "Eigen Naam B.V." in command.content
    assert filtered.calls == []
    with pytest.raises(PermanentError, match="no name in Exact"):
        await decider(exact, cache, filtered=filtered).document_changed(
            "default", 1, KINDS["SalesInvoices"], invoice(exact)
        )


async def test_every_decision_is_counted_by_document_type_and_outcome(cache):
    registry = CollectorRegistry()
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact, amount=100.0)
    d = decider(exact, cache, notices=notices)
    d.metrics = NoticeMetrics.create(registry)
    await d.document_changed("default", 1, KINDS["SalesInvoices"], key)
    await d.document_changed("default", 1, KINDS["SalesInvoices"], key)
    d.clock = lambda: DUE + timedelta(days=20, hours=11)
    await fire_due(d, Batch(notices, DUE + timedelta(days=20, hours=11)))

    def value(outcome: str) -> float | None:
        return registry.get_sample_value(
            "mlc_enricher_notices_total", {"entity": "SalesInvoices", "outcome": outcome}
        )

    assert (value("sent"), value("republished"), value("scheduled")) == (1.0, 1.0, 3.0)
    # the email and SMS reminders superseded by the call, which is below the threshold
    assert value("cancelled") == 3.0


async def test_a_payment_stops_the_reminders_and_thanks_the_customer_where_switched_on(
    cache, tmp_path: Path
):
    rules = tmp_path / "default.yaml"
    rules.write_text("enable: [payment-thanks]\n")
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact)
    d = decider(exact, cache, notices=notices, rules=rules)
    await d.document_changed("default", 1, KINDS["SalesInvoices"], key)
    receivable = uuid4()
    exact.docs[str(receivable)] = {
        "ID": str(receivable), "Account": str(ACCOUNT), "AccountContact": None,
        "InvoiceNumber": 26000001, "AmountFC": 1210.0, "Currency": "EUR", "IsFullyPaid": True,
        "TransactionEntryID": str(key),
    }  # fmt: skip
    payment = PaymentReceived(
        connection_id="default", division=1, receivable_id=receivable, invoice_id=key,
        invoice_number="26000001",
    )  # fmt: skip
    (thanks,) = await payment_received(payment, decider=d)
    assert (thanks.channel, thanks.rule) == ("email", "payment-thanks")
    assert thanks.subject == "Betaling ontvangen door Bakkerij Demo B.V."
    assert "€ 1.210,00 voor factuur 26000001" in thanks.content
    assert [s for r, s in notices.states().items() if r.startswith("invoice-overdue")] == [
        "cancelled"
    ] * 3


async def test_a_purchase_entry_sends_a_receipt_notice_only_where_switched_on(
    cache, tmp_path: Path
):
    exact = FakeExact()
    key = uuid4()
    exact.docs[str(key)] = {
        "EntryID": str(key), "Supplier": str(SUPPLIER), "YourRef": "RE-2026-77",
        "AmountFC": 240.0, "Currency": "EUR", "Status": 20, "Type": 30,
    }  # fmt: skip
    assert (
        await decider(exact, cache).document_changed("default", 1, KINDS["PurchaseEntries"], key)
        == []
    )
    rules = tmp_path / "default.yaml"
    rules.write_text("enable: [purchase-invoice-received]\n")
    d = decider(exact, cache, rules=rules)
    (skipped,) = await d.document_changed("default", 1, KINDS["PurchaseEntries"], key)
    # the supplier's sales rep is not whom an invoice receipt is for, and there is no main contact
    assert (skipped.reason, skipped.detail) == (
        "no_contact", "the account has no contact person, role match or main contact"
    )  # fmt: skip
    bookkeeper = {
        "ID": str(uuid4()),
        "FirstName": "Hans",
        "Country": "DE",
        "JobTitleDescription": "Buchhaltung",
        "Email": "hans@lieferant.example",
    }
    exact.contacts[str(SUPPLIER)].append(bookkeeper)
    await cache.invalidate_account("default", 1, SUPPLIER)
    (notice,) = await d.document_changed("default", 1, KINDS["PurchaseEntries"], key)
    assert (notice.channel, notice.recipient.address) == ("email", "hans@lieferant.example")
    assert notice.subject == "Rechnung RE-2026-77 bei Bakkerij Demo B.V. eingegangen"


async def test_a_deleted_invoice_ends_its_reminders_without_reading_exact(cache):
    exact, notices = FakeExact(), FakeNotices()
    key = invoice(exact)
    d = decider(exact, cache, notices=notices)
    await d.document_changed("default", 1, KINDS["SalesInvoices"], key)
    exact.reads.clear()
    deleted = ExactWebhookReceived(
        connection_id="default", client_id="c", division=1, topic="SalesInvoices",
        action="Delete", key_id=key, endpoint="https://start.exactonline.nl/x",
        event_created_on="2026-12-01T10:00:00.000", received_at=NOON,
    )  # fmt: skip
    assert await handle_exact_event(deleted, decider=d, cache=cache) == []
    assert exact.reads == []
    assert [s for r, s in notices.states().items() if r.startswith("invoice-overdue")] == [
        "cancelled"
    ] * 3


async def test_concurrent_notices_share_one_read_of_the_divisions_name_and_a_failure_is_retried(
    cache,
):
    exact, filtered = FakeExact(), FakeFiltered(company="")
    d = decider(exact, cache, filtered=filtered)
    policy = d.rulebook.for_connection("default")
    results = await asyncio.gather(
        *(d.company(policy, "default", 1) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, PermanentError) for r in results)
    assert len(filtered.calls) == 1
    filtered.company = "Later Genoemd B.V."
    names = await asyncio.gather(*(d.company(policy, "default", 1) for _ in range(20)))
    assert set(names) == {"Later Genoemd B.V."}
    assert len(filtered.calls) == 2
