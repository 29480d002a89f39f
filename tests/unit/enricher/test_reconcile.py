"""Reconciliation with a fake Exact: streams with a sync API are read by row version from a
cursor, the others by ``Modified`` since the watermark; paid receivables become payment
facts, and marks move only forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from common.contracts import ExactWebhookReceived, PaymentReceived
from common.errors import PermanentError
from enricher.reconcile import STREAMS, SYNCED, Mark, reconcile

INVOICES, RECEIVABLES = "salesinvoice/SalesInvoices", "cashflow/Receivables"
ENTRIES = "salesentry/SalesEntries"
INVOICE_FEED, ORDER_FEED = "sync/SalesInvoice/SalesInvoices", "sync/SalesOrder/SalesOrderHeaders"

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def ms(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)})/"


class FakeExact:
    """Filtered reads by resource, sync feeds by path (rows carry ``Timestamp``), and
    ``SyncTimestamp`` answering ``first``; every request is recorded."""

    def __init__(
        self,
        rows: dict[str, list[dict[str, Any]]] | None = None,
        *,
        first: int | None = None,
        refuse: str | None = None,
    ) -> None:
        self.rows = rows or {}
        self.first = first
        self.refuse = refuse
        self.filters: list[tuple[str, str]] = []
        self.syncs: list[tuple[str, int]] = []
        self.starts: list[tuple[str, datetime]] = []

    @property
    def requests(self) -> int:
        return len(self.filters) + len(self.syncs) + len(self.starts)

    async def get_filtered(self, connection_id, division, resource, filter_, select):  # type: ignore[no-untyped-def]
        self.filters.append((resource, filter_))
        return self.rows.get(resource, [])

    async def get_sync(self, connection_id, division, path, after, select):  # type: ignore[no-untyped-def]
        self.syncs.append((path, after))
        if path == self.refuse:
            raise PermanentError("Exact answered 404", code=404)  # no such feed here
        return [r for r in self.rows.get(path, []) if r["Timestamp"] > after]

    async def sync_start(self, connection_id, division, endpoint, modified):  # type: ignore[no-untyped-def]
        self.starts.append((endpoint, modified))
        return self.first


async def run(exact: FakeExact, marks: dict[str, Mark], **options: Any):  # type: ignore[no-untyped-def]
    return await reconcile(
        "default",
        7,
        "client",
        exact=exact,
        watermarks=marks,
        now=options.pop("now", NOW),
        lookback=timedelta(days=1),
        overlap=options.pop("overlap", timedelta(minutes=5)),
        **options,
    )


def test_invoices_and_orders_of_both_kinds_have_a_sync_api_and_the_rest_do_not():
    assert {"SalesInvoices", "SalesOrders", "PurchaseOrders"} == SYNCED
    assert set(STREAMS) - SYNCED == {
        "SalesEntries",
        "PurchaseInvoices",
        "PurchaseEntries",
        "Payments",
    }


async def test_a_changed_invoice_is_read_from_its_cursor_and_paid_receivables_become_payments():
    invoice, entry, receivable = uuid4(), uuid4(), uuid4()
    changed, paid = NOW - timedelta(minutes=3), NOW - timedelta(minutes=1)
    exact = FakeExact(
        {
            INVOICE_FEED: [{"InvoiceID": str(invoice), "Modified": ms(changed), "Timestamp": 905}],
            RECEIVABLES: [
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
    marks = {stream: Mark(last, 900) for stream in SYNCED} | {"Payments": Mark(last)}
    result = await run(exact, marks)
    update, payment = result.messages
    assert isinstance(update, ExactWebhookReceived)
    assert (update.key_id, update.source, update.key(), update.endpoint) == (
        invoice,
        "reconciliation",
        "exact.salesinvoices.update",
        INVOICES,
    )
    assert update.event_created_on == changed.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    assert isinstance(payment, PaymentReceived)
    assert (payment.invoice_id, payment.invoice_number, payment.amount) == (
        entry,
        "26000001",
        121.0,
    )
    assert payment.key() == "exact.payment.received"
    # the cursor moves to the highest row version read; the Modified read along goes too
    assert result.watermarks["SalesInvoices"].timestamp == 905
    assert result.watermarks["SalesInvoices"].modified is not None
    assert result.watermarks["SalesInvoices"].modified.replace(microsecond=0) == changed.replace(
        microsecond=0
    )
    # synced streams ask only for rows after their cursor, never SyncTimestamp or Modified
    assert sorted(exact.syncs) == sorted(
        [
            (INVOICE_FEED, 900),
            (ORDER_FEED, 900),
            ("sync/PurchaseOrder/PurchaseOrders", 900),
        ]
    )
    assert exact.starts == []
    filtered = [resource for resource, _ in exact.filters]
    assert INVOICES not in filtered
    assert filtered == [
        resource for stream, (resource, _, _) in STREAMS.items() if stream not in SYNCED
    ]
    # the others are read from a little before their watermark; payments only when fully paid
    assert (
        RECEIVABLES,
        "IsFullyPaid eq true and Modified gt datetime'2026-11-25T10:55:00'",
    ) in exact.filters
    assert (ENTRIES, "Modified gt datetime'2026-11-25T10:55:00'") not in exact.filters  # no mark
    assert (ENTRIES, "Modified gt datetime'2026-11-24T11:55:00'") in exact.filters


async def test_a_first_pass_starts_at_the_sync_timestamp_of_the_lookback():
    invoice = uuid4()
    exact = FakeExact(
        {
            INVOICE_FEED: [
                {
                    "InvoiceID": str(uuid4()),
                    "Modified": ms(NOW - timedelta(days=3)),
                    "Timestamp": 40,
                },
                {
                    "InvoiceID": str(invoice),
                    "Modified": ms(NOW - timedelta(hours=2)),
                    "Timestamp": 41,
                },
            ]
        },
        first=41,
    )
    found = await run(exact, {}, overlap=timedelta(0))
    assert [m.key_id for m in found.messages if isinstance(m, ExactWebhookReceived)] == [invoice]
    assert (INVOICE_FEED, 40) in exact.syncs
    assert ("SalesInvoices", NOW - timedelta(days=1)) in exact.starts
    assert {endpoint for endpoint, _ in exact.starts} == {
        "SalesInvoices",
        "SalesOrderHeaders",
        "PurchaseOrders",
    }
    assert found.watermarks["SalesInvoices"].timestamp == 41


async def test_a_stream_marked_by_modified_before_starts_its_cursor_at_that_time():
    """An install upgraded from Modified watermarks skips nothing: the first sync read starts
    at the SyncTimestamp of the old mark (less the overlap)."""
    mark = NOW - timedelta(days=5)
    exact = FakeExact(first=None)
    found = await run(exact, {"SalesInvoices": Mark(mark)})
    assert ("SalesInvoices", mark - timedelta(minutes=5)) in exact.starts
    # nothing modified since: no cursor yet, the old mark kept
    assert found.watermarks["SalesInvoices"] == Mark(mark, None)


async def test_a_pass_with_no_change_costs_one_request_per_stream_and_publishes_nothing():
    mark = NOW - timedelta(minutes=10)
    exact = FakeExact(
        {INVOICE_FEED: [{"InvoiceID": str(uuid4()), "Modified": ms(mark), "Timestamp": 77}]}
    )
    marks = {stream: Mark(mark, 77 if stream in SYNCED else None) for stream in STREAMS}
    again = await run(exact, marks)
    assert again.messages == []
    assert exact.requests == len(STREAMS)
    assert again.watermarks == marks


async def test_an_empty_first_pass_keeps_its_start_for_the_next():
    exact = FakeExact()
    first = await run(exact, {}, overlap=timedelta(0))
    assert first.messages == []
    assert first.watermarks == dict.fromkeys(STREAMS, Mark(NOW - timedelta(days=1)))
    assert exact.requests == len(STREAMS)  # SyncTimestamp found nothing: no feed read


async def test_a_document_on_several_rows_of_a_feed_is_one_event():
    """Exact's sales invoice feed has a row per line beside the header, all with its key."""
    invoice = uuid4()
    header, line = NOW - timedelta(minutes=9), NOW - timedelta(minutes=8)
    exact = FakeExact(
        {
            INVOICE_FEED: [
                {"InvoiceID": str(invoice), "Modified": ms(header), "Timestamp": 11},
                {"InvoiceID": str(invoice), "Modified": ms(line), "Timestamp": 12},
            ]
        }
    )
    found = await run(exact, {"SalesInvoices": Mark(NOW - timedelta(hours=1), 10)})
    updates = [m for m in found.messages if isinstance(m, ExactWebhookReceived)]
    assert [m.key_id for m in updates] == [invoice]
    assert updates[0].event_created_on == line.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    assert found.watermarks["SalesInvoices"].timestamp == 12


async def test_a_refused_sync_api_is_read_by_modified_and_not_asked_again():
    order = uuid4()
    mark = NOW - timedelta(hours=1)
    exact = FakeExact(
        {"salesorder/SalesOrders": [{"OrderID": str(order), "Modified": ms(NOW)}]},
        refuse=ORDER_FEED,
    )
    refused: set[str] = set()
    marks = {"SalesOrders": Mark(mark, 5)}
    found = await run(exact, marks, refused=refused)
    assert refused == {"SalesOrders"}
    assert [m.key_id for m in found.messages if isinstance(m, ExactWebhookReceived)] == [order]
    assert ("salesorder/SalesOrders", "Modified gt datetime'2026-11-25T10:55:00'") in exact.filters
    assert found.watermarks["SalesOrders"] == Mark(NOW, 5)  # the cursor is kept
    exact.syncs.clear()
    await run(exact, found.watermarks, refused=refused)
    assert ORDER_FEED not in {path for path, _ in exact.syncs}


async def test_the_same_change_found_twice_is_the_same_message():
    invoice = uuid4()
    rows = {
        ENTRIES: [{"EntryID": str(invoice), "Modified": ms(NOW - timedelta(minutes=1))}],
        INVOICE_FEED: [
            {"InvoiceID": str(invoice), "Modified": ms(NOW - timedelta(minutes=1)), "Timestamp": 3}
        ],
    }
    first = await run(FakeExact(rows, first=3), {})
    second = await run(FakeExact(rows, first=3), {}, now=NOW + timedelta(minutes=5))
    assert [m.message_id() for m in first.messages] == [m.message_id() for m in second.messages]
    assert len(first.messages) == 2
