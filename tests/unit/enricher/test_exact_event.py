"""The enricher's handler with a fake Exact and a fake cache: drafts send nothing, an issued
invoice one command, and a cached customer is not read again."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from policy_fakes import FakeNotices, decider

from common.contracts import ExactWebhookReceived, NotificationSkipped, SendNotification
from enricher.handlers import handle_exact_event

ACCOUNT = UUID("11111111-1111-4111-8111-111111111111")
MAIN = UUID("22222222-2222-4222-8222-222222222222")
OTHER = UUID("33333333-3333-4333-8333-333333333333")


class FakeExact:
    def __init__(self, invoice: dict | None, contacts: list[dict]) -> None:
        self.invoice, self.contacts = invoice, contacts
        self.calls: list[str] = []

    async def get_one(
        self, connection_id, division, resource, key_field, key, select, changed_before=None
    ):  # type: ignore[no-untyped-def]
        self.calls.append(resource)
        if resource.endswith("SalesInvoices"):
            return self.invoice
        return {
            "ID": str(ACCOUNT),
            "Name": "Bakkerij",
            "MainContact": str(MAIN),
            "Country": "NL",
            "Language": "NL",
        }

    async def get_all(
        self, connection_id, division, resource, field, value, select, changed_before=None
    ):  # type: ignore[no-untyped-def]
        assert (resource, field, value) == ("crm/Contacts", "Account", ACCOUNT)
        self.calls.append(resource)
        return self.contacts


def event(action: str = "Update", topic: str = "SalesInvoices") -> ExactWebhookReceived:
    return ExactWebhookReceived(
        connection_id="default",
        client_id="c",
        division=3108123,
        topic=topic,
        action=action,
        key_id=uuid4(),
        endpoint="https://start.exactonline.nl/x",
        event_created_on="2026-11-25",
        received_at=datetime.now(UTC),
    )


def invoice(status: int = 50, kind: int = 8020) -> dict:
    return {
        "InvoiceID": str(uuid4()),
        "InvoiceNumber": 26000001,
        "InvoiceTo": str(ACCOUNT),
        "InvoiceToContactPerson": None,
        "Status": status,
        "Type": kind,
        "AmountFC": 1210.0,
        "Currency": "EUR",
        "DueDate": "/Date(1767225600000)/",
    }


CONTACTS = [
    {"ID": str(OTHER), "FirstName": "Piet", "Mobile": "06 98765432", "IsMainContact": False},
    {
        "ID": str(MAIN),
        "FirstName": "Anna",
        "Mobile": "",
        "BusinessMobile": "+31 6 12345678",
        "IsMainContact": True,
        "Language": "NL",
    },
]


async def run(exact: FakeExact, cache, ev: ExactWebhookReceived | None = None) -> list:  # type: ignore[no-untyped-def]
    # a fresh notice store each time: every run decides anew, as on a first delivery
    return await handle_exact_event(
        ev or event(), decider=decider(exact, cache, notices=FakeNotices()), cache=cache
    )


async def test_an_issued_invoice_becomes_one_sms_to_the_main_contact(cache):
    exact = FakeExact(invoice(), CONTACTS)
    (command,) = await run(exact, cache)
    assert isinstance(command, SendNotification)
    assert command.recipient.address == "+31612345678"
    assert command.recipient.contact_id == MAIN
    assert command.content.startswith("Beste Anna, factuur 26000001")
    assert "€ 1.210,00" in command.content
    assert "01-01-2026" in command.content
    assert command.fact == "invoice_issued"
    assert exact.calls == ["salesinvoice/SalesInvoices", "crm/Accounts", "crm/Contacts"]


async def test_the_same_fact_always_gets_the_same_idempotency_key_and_notification_id(cache):
    ev = event()
    exact = FakeExact(invoice(), CONTACTS)
    first, second = await run(exact, cache, ev), await run(exact, cache, ev)
    assert first[0].idempotency_key == second[0].idempotency_key
    assert first[0].notification_id == second[0].notification_id


async def test_drafts_and_credit_notes_send_nothing_and_deletes_are_not_fetched(cache):
    assert await run(FakeExact(invoice(status=10), CONTACTS), cache) == []
    assert await run(FakeExact(invoice(status=20), CONTACTS), cache) == []
    assert await run(FakeExact(invoice(kind=8021), CONTACTS), cache) == []
    exact = FakeExact(invoice(), CONTACTS)
    assert await run(exact, cache, event(action="Delete")) == []
    assert exact.calls == []


async def test_an_invoice_whose_account_has_no_mobile_or_email_is_skipped_with_a_reason(cache):
    (skipped,) = await run(
        FakeExact(invoice(), [{"ID": str(MAIN), "Mobile": "020 1234567"}]), cache
    )
    assert isinstance(skipped, NotificationSkipped)
    assert skipped.reason == "no_contact"
    assert skipped.detail == "no mobile number or email address on 1 candidate contact(s)"


async def test_a_vanished_invoice_sends_nothing(cache):
    assert await run(FakeExact(None, CONTACTS), cache) == []


async def test_a_cached_customer_costs_only_the_invoice_read(cache):
    exact = FakeExact(invoice(), CONTACTS)
    first = await run(exact, cache)
    exact.calls.clear()
    second = await run(exact, cache)
    assert exact.calls == ["salesinvoice/SalesInvoices"]
    assert second[0].recipient == first[0].recipient


async def test_a_cached_customer_without_the_invoices_contact_person_is_read_again(cache):
    exact = FakeExact(invoice(), CONTACTS)
    await run(exact, cache)
    newcomer = {"ID": str(uuid4()), "FirstName": "Nina", "Mobile": "+31 6 11112222"}
    exact.contacts = [*CONTACTS, newcomer]
    exact.calls.clear()
    addressed = invoice()
    addressed["InvoiceToContactPerson"] = newcomer["ID"]
    exact.invoice = addressed
    (command,) = await run(exact, cache)
    assert exact.calls == ["salesinvoice/SalesInvoices", "crm/Accounts", "crm/Contacts"]
    assert command.recipient.address == "+31611112222"
