"""End to end on every channel: an invoice by email with its delivery and open in the trail, a
bounce that suppresses the address, an urgent call answered and one not answered, an SMS STOP
that suppresses the number until START, and forged SendGrid and inbound posts refused."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import pytest
import pytest_asyncio

from common.testing import eventually

pytestmark = pytest.mark.e2e


def unique_mobile() -> str:
    return f"+3165{uuid.uuid4().int % 10_000_000:07d}"


def unique_email(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:8]}@klant.example"


async def account_with(pipeline, name: str, **contact: Any) -> str:  # type: ignore[no-untyped-def]
    account = await pipeline.exact.create_account(Name=name, Country="NL", Language="NL")
    await pipeline.exact.create_contact(
        Account=account["ID"], IsMainContact=True, Country="NL", FirstName="Fleur", **contact
    )
    return str(account["ID"])


async def issue(pipeline, account: str) -> str:  # type: ignore[no-untyped-def]
    draft = await pipeline.exact.create_invoice(amount=242.0, account_id=account)
    issued = await pipeline.exact.issue_invoice(draft["InvoiceID"])
    return str(issued["InvoiceNumber"])


async def settled(pipeline, number: str, until) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return await eventually(
        lambda: pipeline.trail(number), until=until, timeout=45, what=f"trail of {number}"
    )


def statuses(entry: dict[str, Any]) -> set[str]:
    return {e["status"] for e in entry["status_history"]}


async def test_an_invoice_by_email_is_delivered_and_its_open_is_in_the_trail(pipeline):
    address = unique_email("fleur")
    account = await account_with(pipeline, "Bloemen Open B.V.", Email=address)
    await pipeline.twilio.inject(kind="final_status", api="mail", to=address, status="read")
    number = await issue(pipeline, account)
    [entry] = await settled(pipeline, number, lambda t: t and t[0].get("delivery_status") == "open")
    assert entry["channel"] == "email"
    assert statuses(entry) >= {"processed", "delivered", "open"}
    [mail] = [m for m in await pipeline.twilio.emails() if m["to"] == [address]]
    assert entry["provider_id"] == mail["message_id"]
    assert mail["subject"]
    assert number in mail["subject"]
    assert [c["type"] for c in mail["body"]["content"]] == ["text/plain", "text/html"]


async def test_a_bounce_suppresses_the_address_and_the_next_invoice_is_skipped(pipeline):
    address = unique_email("weg")
    account = await account_with(pipeline, "Bounce B.V.", Email=address)
    await pipeline.twilio.inject(kind="final_status", api="mail", to=address, status="undelivered")
    first = await issue(pipeline, account)
    await settled(pipeline, first, lambda t: t and t[0].get("delivery_status") == "bounce")
    second = await issue(pipeline, account)
    [entry] = await settled(pipeline, second, lambda t: t and t[0].get("state") == "skipped")
    assert entry["failure_reason"] == "opted_out"
    assert len([m for m in await pipeline.twilio.emails() if m["to"] == [address]]) == 1


async def big_export_order(pipeline, number: str) -> str:  # type: ignore[no-untyped-def]
    account = await account_with(pipeline, "Export Call Ltd", Mobile=number)
    order = await pipeline.exact.create(
        "SalesOrders",
        OrderedBy=account,
        InvoiceTo=account,
        AmountFC=30000.0,
        AmountDC=27600.0,
        Currency="USD",
        ApprovalStatus=2,
    )
    return str(order["OrderNumber"])


def voice_entry(trail: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in trail if e["channel"] == "voice"), None)


async def test_an_urgent_order_call_answered_by_a_person_ends_answered_in_the_trail(pipeline):
    number = unique_mobile()
    await pipeline.twilio.inject(
        kind="final_status", api="calls", to=number, status="completed", answered_by="human"
    )
    order = await big_export_order(pipeline, number)

    def answered(trail: list[dict[str, Any]]) -> bool:
        # the detection result comes before the call ends; the trail keeps both
        entry = voice_entry(trail)
        return (
            entry is not None
            and entry.get("delivery_status") == "answered"
            and "completed" in statuses(entry)
        )

    entry = voice_entry(await settled(pipeline, order, answered))
    assert entry is not None
    assert statuses(entry) >= {"ringing", "in-progress", "completed", "answered"}
    calls = [c for c in await pipeline.twilio.calls() if c["to"] == number]
    assert len(calls) == 1
    assert entry["provider_id"] == calls[0]["sid"]


async def test_an_unanswered_call_is_an_outcome_recorded_once_not_retried(pipeline):
    number = unique_mobile()
    await pipeline.twilio.inject(kind="final_status", api="calls", to=number, status="no-answer")
    order = await big_export_order(pipeline, number)

    def unanswered(trail: list[dict[str, Any]]) -> bool:
        entry = voice_entry(trail)
        return entry is not None and entry.get("delivery_status") == "no-answer"

    entry = voice_entry(await settled(pipeline, order, unanswered))
    assert entry is not None
    assert [a["outcome"] for a in entry["attempts"]] == ["sent"]
    assert len([c for c in await pipeline.twilio.calls() if c["to"] == number]) == 1


async def suppressed(database_url: str, count: int) -> None:
    db = await asyncpg.connect(database_url)
    try:
        await eventually(
            lambda: db.fetchval("SELECT count(*) FROM dispatch.suppressions"),
            until=lambda n: n == count,
            timeout=30,
            what=f"{count} suppressions",
        )
    finally:
        await db.close()


async def test_stop_suppresses_sms_to_the_number_and_start_lifts_it(pipeline, database_url):
    number = unique_mobile()
    account = await account_with(pipeline, "Stop Start B.V.", Mobile=number)
    first = await issue(pipeline, account)
    await settled(pipeline, first, lambda t: t and t[0].get("delivery_status") == "delivered")
    db = await asyncpg.connect(database_url)
    before = await db.fetchval("SELECT count(*) FROM dispatch.suppressions")
    await db.close()

    answer = await pipeline.twilio.inbound(sender=number, body="Stop")
    assert answer["webhook_status"] == 200
    await suppressed(database_url, before + 2)  # SMS and calls
    second = await issue(pipeline, account)
    [entry] = await settled(pipeline, second, lambda t: t and t[0].get("state") == "skipped")
    assert entry["failure_reason"] == "opted_out"

    await pipeline.twilio.inbound(sender=number, body="START")
    await suppressed(database_url, before)
    third = await issue(pipeline, account)
    await settled(pipeline, third, lambda t: t and t[0].get("delivery_status") == "delivered")
    assert len(await pipeline.twilio.messages(to=number)) == 2  # the first and the third


@pytest_asyncio.fixture
async def feed_probe(pipeline) -> AsyncIterator[aio_pika.abc.AbstractQueue]:  # type: ignore[no-untyped-def]
    channel = await pipeline.broker.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind("mlc.events", routing_key="email.event.#")
    await queue.bind("mlc.events", routing_key="twilio.inbound.#")
    yield queue
    await channel.close()


async def test_forged_sendgrid_events_and_inbound_sms_are_refused_and_publish_nothing(
    pipeline, feed_probe
):
    ingress = pipeline.stack.url("ingress")
    body = json.dumps([{"event": "unsubscribe", "email": "x@y.example", "sg_event_id": "e1"}])
    forged = await pipeline.http.post(
        f"{ingress}/webhooks/sendgrid/events",
        content=body,
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": "MEUCIQDforged",
            "X-Twilio-Email-Event-Webhook-Timestamp": "1700000000",
        },
    )
    unsigned = await pipeline.http.post(
        f"{ingress}/webhooks/twilio/inbound",
        data={"MessageSid": "SM" + "0" * 32, "From": "+31611112222", "To": "+3197", "Body": "STOP"},
    )
    signed_elsewhere = await pipeline.http.post(
        f"{ingress}/webhooks/twilio/inbound",
        data={"MessageSid": "SM" + "1" * 32, "From": "+31611112222", "To": "+3197", "Body": "STOP"},
        headers={"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
    )
    assert (forged.status_code, unsigned.status_code, signed_elsewhere.status_code) == (
        401,
        401,
        401,
    )
    assert await feed_probe.get(fail=False, no_ack=True) is None
