"""End to end: invoices issued together (an invoicing run) cost a handful of Exact calls, not
three each, and still become exactly one SMS apiece."""

from __future__ import annotations

import pytest

from common.settings import SIMULATOR_DEFAULTS
from common.testing import eventually

pytestmark = pytest.mark.e2e

DIVISION = int(SIMULATOR_DEFAULTS["exact_division"])  # type: ignore[call-overload]
#: A fictional number of the test's own customer, so its messages are told apart.
MOBILE = "+31620000420"


async def test_twenty_invoices_issued_at_once_cost_far_fewer_than_sixty_exact_calls(pipeline):
    exact, twilio = pipeline.exact, pipeline.twilio
    account = await exact.create_account(Name="Groothandel Economie B.V.", Country="NL")
    await exact.create_contact(
        Account=account["ID"], FirstName="Eva", Mobile=MOBILE, IsMainContact=True, Country="NL"
    )
    drafts = await exact.create_invoices(
        [{"amount": 100.0 + i, "account_id": account["ID"]} for i in range(20)]
    )
    ids = [draft["InvoiceID"] for draft in drafts]

    # The drafts fired webhooks too: wait until the enricher has read them all (they send
    # nothing), so that the calls counted below are the issue's alone.
    async def drafts_read() -> set[str]:
        calls = await exact.requests(division=DIVISION, path_contains="SalesInvoices")
        filters = " ".join(c["query"].get("$filter", "") for c in calls if c["status"] == 200)
        return {i for i in ids if i in filters}

    await eventually(drafts_read, until=lambda read: len(read) == 20, what="drafts read")
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
    # one read of the 20 invoices, their account, its contacts (a second read of a kind when
    # the webhooks straddle a batch window), and once per enricher process the division's
    # name that the texts sign with
    assert len(calls) <= 7, [(c["endpoint"], c["status"]) for c in calls]
    assert {c["endpoint"] for c in calls} <= {
        "salesinvoice/SalesInvoices",
        "crm/Accounts",
        "crm/Contacts",
        "hrm/Divisions",
    }
    assert all(c["status"] == 200 for c in calls)
