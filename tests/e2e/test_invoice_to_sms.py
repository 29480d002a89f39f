"""End to end: an issued sales invoice in the Exact simulator becomes exactly one SMS at the
Twilio simulator, and its delivered status lands in the audit trail."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from common.settings import SIMULATOR_DEFAULTS
from common.signatures import exact_hashcode
from common.testing import eventually

pytestmark = pytest.mark.e2e


def signed_webhook(
    invoice_id: str,
    *,
    secret: str | None = None,
    topic: str = "SalesInvoices",
    division: int | None = None,
) -> bytes:
    """An Exact webhook body, compact and signed as Exact signs it."""
    division = division or int(SIMULATOR_DEFAULTS["exact_division"])  # type: ignore[call-overload]
    content = json.dumps(
        {
            "Topic": topic,
            "ClientId": SIMULATOR_DEFAULTS["exact_client_id"],
            "Division": division,
            "Action": "Update",
            "Key": invoice_id,
            "ExactOnlineEndpoint": f"https://start.exactonline.nl/api/v1/{division}/salesinvoice/"
            f"SalesInvoices(guid'{invoice_id}')",
            "EventCreatedOn": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
        },
        separators=(",", ":"),
    ).encode()
    key = secret or str(SIMULATOR_DEFAULTS["exact_webhook_secret"])
    return (
        b'{"Content":' + content + b',"HashCode":"' + exact_hashcode(key, content).encode() + b'"}'
    )


async def sms_to_invoice(pipeline, number: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [m for m in await pipeline.twilio.messages() if number in m["body"]]


async def issue(pipeline) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    invoice = await pipeline.exact.create_invoice(amount=250.00)
    issued = await pipeline.exact.issue_invoice(invoice["InvoiceID"])
    return invoice["InvoiceID"], str(issued["InvoiceNumber"])


async def test_an_issued_invoice_becomes_one_delivered_sms_in_the_audit_trail(pipeline):
    invoice = await pipeline.exact.create_invoice(amount=1210.00)
    await pipeline.exact.edit_invoice(invoice["InvoiceID"], Description="edited draft")
    await pipeline.exact.edit_invoice(invoice["InvoiceID"], Description="edited again")
    issued = await pipeline.exact.issue_invoice(invoice["InvoiceID"])
    number = str(issued["InvoiceNumber"])

    sms = await eventually(
        lambda: sms_to_invoice(pipeline, number),
        until=lambda m: len(m) == 1,
        timeout=30,
        what="one SMS for the invoice",
    )
    assert sms[0]["to"].startswith("+316")
    assert "€ 1.210,00" in sms[0]["body"]  # the contact reads Dutch
    trail = await eventually(
        lambda: pipeline.trail(number),
        until=lambda t: t and t[0]["delivery_status"] == "delivered",
        timeout=30,
        what="delivered in the audit trail",
    )
    assert len(trail) == 1
    entry = trail[0]
    assert entry["entity"] == "SalesInvoices"
    assert entry["document_id"] == invoice["InvoiceID"]
    assert entry["provider_id"] == sms[0]["sid"]
    assert [a["outcome"] for a in entry["attempts"]] == ["sent"]
    assert {e["status"] for e in entry["status_history"]} >= {"sent", "delivered"}
    # the draft edits sent nothing; webhooks that raced the first send wait one retry tier,
    # find the claim sent, and leave nothing parked
    await eventually(
        pipeline.parked,
        until=lambda parked: parked == {},
        timeout=30,
        what="retry and dead-letter queues empty",
    )
    assert len(await sms_to_invoice(pipeline, number)) == 1


async def test_the_same_webhook_delivered_three_times_still_sends_one_sms(pipeline):
    invoice_id, number = await issue(pipeline)
    await eventually(
        lambda: sms_to_invoice(pipeline, number),
        until=lambda m: len(m) == 1,
        timeout=30,
        what="first SMS",
    )
    body = signed_webhook(invoice_id)
    for _ in range(3):
        assert (await pipeline.post_exact(body)).status_code == 200
    # the replays are consumed (queue drained) and the claim stops a second send
    await eventually(lambda: pipeline.depth("enricher.exact-events"), until=lambda n: n == 0)
    await eventually(lambda: pipeline.depth("dispatcher.sends"), until=lambda n: n == 0)
    trail = await eventually(
        lambda: pipeline.trail(number), until=lambda t: t and t[0]["delivery_status"] == "delivered"
    )
    assert len(await sms_to_invoice(pipeline, number)) == 1
    assert len(trail) == 1


async def test_a_forged_webhook_is_refused_and_publishes_nothing(pipeline):
    channel = await pipeline.broker.channel()
    probe = await channel.declare_queue(exclusive=True)
    await probe.bind("mlc.events", routing_key="exact.#")
    _invoice_id, number = await issue(pipeline)
    await eventually(
        lambda: sms_to_invoice(pipeline, number),
        until=lambda m: len(m) == 1,
        timeout=30,
        what="SMS of the genuine invoice",
    )
    while await probe.get(fail=False, timeout=1):  # drop what the genuine flow published
        pass
    forged = signed_webhook(str(uuid.uuid4()), secret="not-the-webhook-secret")
    answer = await pipeline.post_exact(forged)
    assert answer.status_code == 401
    # a genuine webhook posted after it is the only thing that reaches the broker
    marker = str(uuid.uuid4())
    assert (await pipeline.post_exact(signed_webhook(marker))).status_code == 200
    first = await probe.get(timeout=10)
    assert json.loads(first.body)["key_id"] == marker
    assert await probe.get(fail=False, timeout=1) is None
    await channel.close()


async def test_malformed_json_is_a_400_and_an_empty_validation_post_a_200(pipeline):
    assert (await pipeline.post_exact(b'{"Content": {"Topic": ')).status_code == 400
    assert (await pipeline.post_exact(b"")).status_code == 200
    unsigned = b'{"Content":{"Topic":"SalesInvoices"}}'
    assert (await pipeline.post_exact(unsigned)).status_code == 401


async def test_twilio_failing_once_is_retried_and_sends_one_sms(pipeline):
    await pipeline.twilio.inject(kind="http_500", count=1)
    _invoice_id, number = await issue(pipeline)
    trail = await eventually(
        lambda: pipeline.trail(number),
        until=lambda t: t and t[0]["delivery_status"] == "delivered",
        timeout=60,
        what="delivered after a retry",
    )
    creates = [
        r
        for r in await pipeline.twilio.requests("Messages.json")
        if r["method"] == "POST" and number in dict(r["form"]).get("Body", "")
    ]
    assert [r["status"] for r in creates] == [500, 201]
    assert len(await sms_to_invoice(pipeline, number)) == 1
    # the refused attempt is in the trail too, with Twilio's code
    assert [(a["outcome"], a["attempt"]) for a in trail[0]["attempts"]] == [
        ("deferred", 1),
        ("sent", 2),
    ]
    assert trail[0]["attempts"][0]["error_code"] == "20500"
    await eventually(
        pipeline.parked,
        until=lambda parked: parked == {},
        timeout=30,
        what="retry and dead-letter queues empty",
    )
