"""End to end: invoices issued together (an invoicing run) cost a handful of Exact calls (the
sync APIs), not three each, and still become exactly one SMS apiece."""

from __future__ import annotations

import pytest

from common.settings import SIMULATOR_DEFAULTS
from common.testing import eventually

pytestmark = pytest.mark.e2e

DIVISION = int(SIMULATOR_DEFAULTS["exact_division"])  # type: ignore[call-overload]
#: A fictional number of the test's own customer, so its messages are told apart.
MOBILE = "+31620000420"


async def enricher_acks(pipeline) -> float:  # type: ignore[no-untyped-def]
    """Deliveries of ``enricher.exact-events`` the enricher has settled with an ack."""
    text = (await pipeline.http.get(f"{pipeline.stack.url('enricher')}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlc_consumer_messages_total{")
        and 'queue="enricher.exact-events"' in line
        and 'outcome="ack"' in line
    )


async def test_twenty_invoices_issued_at_once_cost_far_fewer_than_sixty_exact_calls(pipeline):
    exact, twilio = pipeline.exact, pipeline.twilio
    settled = await enricher_acks(pipeline)
    account = await exact.create_account(Name="Groothandel Economie B.V.", Country="NL")
    await exact.create_contact(
        Account=account["ID"], FirstName="Eva", Mobile=MOBILE, IsMainContact=True, Country="NL"
    )
    drafts = await exact.create_invoices(
        [{"amount": 100.0 + i, "account_id": account["ID"]} for i in range(20)]
    )
    ids = [draft["InvoiceID"] for draft in drafts]

    # The account, its contact (which also updates the account's MainContact) and the drafts
    # fired 23 webhooks: wait until the enricher has settled them all (they send nothing), so
    # that the calls counted below are the issue's alone.
    await eventually(
        lambda: enricher_acks(pipeline),
        until=lambda acks: acks >= settled + 23,
        what="account, contact and drafts read",
    )
    before = len(await exact.requests(division=DIVISION))

    issued = await exact.issue_invoices(ids)
    numbers = sorted(str(invoice["InvoiceNumber"]) for invoice in issued)

    sms = await eventually(
        lambda: twilio.messages(to=MOBILE),
        until=lambda m: len(m) >= 20,
        timeout=60,
        what="20 SMS",
    )
    await eventually(pipeline.parked, until=lambda parked: parked == {}, what="nothing parked")
    await eventually(lambda: pipeline.depth("enricher.exact-events"), until=lambda n: n == 0)
    await eventually(lambda: pipeline.depth("dispatcher.sends"), until=lambda n: n == 0)

    sms = await twilio.messages(to=MOBILE)
    assert sorted(n for m in sms for n in numbers if n in m["body"]) == numbers  # one each
    assert len(sms) == 20
    calls = (await exact.requests(division=DIVISION))[before:]
    # reads of the sync feeds the enricher mirrors (the invoices and, on a cache miss, the
    # accounts, contacts and deletes changed since its last read; a second of a kind when the
    # webhooks straddle a batch window), and once per enricher process the division's name
    # that the texts sign with
    assert len(calls) <= 7, [(c["endpoint"], c["status"]) for c in calls]
    assert {c["endpoint"] for c in calls} <= {
        "sync/SalesInvoice/SalesInvoices",
        "read/sync/Sync/SyncTimestamp",
        "sync/CRM/Accounts",
        "sync/CRM/Contacts",
        "sync/Deleted",
        "hrm/Divisions",
    }
    assert all(c["status"] == 200 for c in calls)
