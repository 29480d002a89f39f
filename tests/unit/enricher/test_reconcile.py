"""Reconciliation with a fake Exact: what changed since the watermark feeds the pipeline, paid
receivables become payment facts, and watermarks move only forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from common.contracts import ExactWebhookReceived, PaymentReceived
from enricher.reconcile import STREAMS, reconcile

INVOICES, RECEIVABLES = "salesinvoice/SalesInvoices", "cashflow/Receivables"

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def ms(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)})/"


class FakeExact:
    def __init__(self, rows: dict[str, list[dict]]) -> None:
        self.rows = rows
        self.filters: list[tuple[str, str]] = []

    async def get_filtered(self, connection_id, division, resource, filter_, select):  # type: ignore[no-untyped-def]
        self.filters.append((resource, filter_))
        return self.rows.get(resource, [])


async def test_changed_invoices_feed_the_pipeline_and_paid_receivables_become_payments():
    invoice, entry, receivable = uuid4(), uuid4(), uuid4()
    changed, paid = NOW - timedelta(minutes=3), NOW - timedelta(minutes=1)
    exact = FakeExact(
        {
            "salesinvoice/SalesInvoices": [{"InvoiceID": str(invoice), "Modified": ms(changed)}],
            "cashflow/Receivables": [
                {
                    "ID": str(receivable),
                    "TransactionEntryID": str(entry),
                    "InvoiceNumber": 26000001,
                    "AmountDC": 121.0,
                    "Currency": "EUR",
                    "LastPaymentDate": ms(paid),
                    "Modified": ms(paid),
                }
            ],
        }
    )
    last = NOW - timedelta(hours=1)
    result = await reconcile(
        "default",
        7,
        "client",
        exact=exact,
        watermarks={"SalesInvoices": last, "Payments": last},
        now=NOW,
        lookback=timedelta(days=1),
        overlap=timedelta(minutes=5),
    )
    update, payment = result.messages
    assert isinstance(update, ExactWebhookReceived)
    assert (update.key_id, update.source, update.key()) == (
        invoice,
        "reconciliation",
        "exact.salesinvoices.update",
    )
    assert isinstance(payment, PaymentReceived)
    assert (payment.invoice_id, payment.invoice_number, payment.amount) == (
        entry,
        "26000001",
        121.0,
    )
    assert payment.key() == "exact.payment.received"
    assert result.watermarks["SalesInvoices"].replace(microsecond=0) == changed.replace(
        microsecond=0
    )
    # each stream is read from a little before its watermark; payments only when fully paid;
    # every document type the rules know is caught up too
    assert [f[0] for f in exact.filters] == [resource for resource, _, _ in STREAMS.values()]
    assert [f for f in exact.filters if f[0] in (INVOICES, RECEIVABLES)] == [
        ("salesinvoice/SalesInvoices", "Modified gt datetime'2026-11-25T10:55:00'"),
        (
            "cashflow/Receivables",
            "IsFullyPaid eq true and Modified gt datetime'2026-11-25T10:55:00'",
        ),
    ]


async def test_a_first_pass_looks_back_and_an_empty_pass_keeps_the_watermark():
    exact = FakeExact({})
    first = await reconcile(
        "default",
        7,
        "client",
        exact=exact,
        watermarks={},
        now=NOW,
        lookback=timedelta(days=1),
        overlap=timedelta(0),
    )
    assert first.messages == []
    assert first.watermarks == dict.fromkeys(STREAMS, NOW - timedelta(days=1))
    mark = NOW - timedelta(minutes=10)
    again = await reconcile(
        "default",
        7,
        "client",
        exact=exact,
        watermarks=dict.fromkeys(STREAMS, mark),
        now=NOW,
        lookback=timedelta(days=1),
        overlap=timedelta(minutes=5),
    )
    assert again.watermarks == dict.fromkeys(STREAMS, mark)


async def test_the_same_change_found_twice_is_the_same_message():
    invoice = uuid4()
    rows = {
        "salesinvoice/SalesInvoices": [
            {"InvoiceID": str(invoice), "Modified": ms(NOW - timedelta(minutes=1))}
        ]
    }
    first = await reconcile(
        "default",
        7,
        "c",
        exact=FakeExact(rows),
        watermarks={},
        now=NOW,
        lookback=timedelta(days=1),
        overlap=timedelta(minutes=5),
    )
    later = NOW + timedelta(minutes=5)
    second = await reconcile(
        "default",
        7,
        "c",
        exact=FakeExact(rows),
        watermarks={},
        now=later,
        lookback=timedelta(days=1),
        overlap=timedelta(minutes=5),
    )
    assert first.messages[0].message_id() == second.messages[0].message_id()
