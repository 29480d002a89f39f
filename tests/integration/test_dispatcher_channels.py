"""The dispatcher's email and voice senders against the Twilio/SendGrid simulator, and its
suppression list against a real database: what is sent on each channel, how each refusal is
classed, and that a suppressed address is never sent to."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import asyncpg
import pytest
import pytest_asyncio
from pydantic import SecretStr

from common import db
from common.contracts import (
    ChannelCredentials,
    EmailEvent,
    InboundSms,
    NotificationSkipped,
    Recipient,
    SendNotification,
    SourceDocument,
    SuppressionChanged,
    TwilioStatus,
    TwilioStatuses,
    address_key,
)
from common.errors import PermanentError, TransientError
from common.settings import ServiceSettings
from dispatcher import feeds
from dispatcher.adapters.accounts import EmailAccounts, TwilioAccounts
from dispatcher.adapters.claims import PostgresClaimStore
from dispatcher.adapters.http import HttpClient
from dispatcher.adapters.sendgrid import SendGridNotifier
from dispatcher.adapters.suppressions import PostgresSuppressions
from dispatcher.adapters.twilio import TwilioNotifier
from dispatcher.handlers import send_notification
from sim_twilio.client import SimTwilioAdmin
from sim_twilio.server import serve
from sim_twilio.settings import Settings as SimSettings


class Lookup:
    """token-keeper's answer: ``acme`` brings its own SendGrid key and senders."""

    def __init__(self, own: dict[str, ChannelCredentials]) -> None:
        self.own = own

    async def get(self, connection_id: str) -> ChannelCredentials:
        return self.own.get(connection_id, ChannelCredentials(connection_id=connection_id))


def command(
    channel: str, address: str, *, connection: str = "default", language: str | None = None
) -> SendNotification:
    key = uuid4().hex
    return SendNotification(
        notification_id=uuid4(),
        idempotency_key=key,
        channel=channel,  # type: ignore[arg-type]
        recipient=Recipient(address=address, name="Sem de Vries", language=language),
        template="invoice_issued",
        content="Beste Sem, factuur F-7 <voor> € 12,10 staat klaar.\n\nGroet,\nZon",
        subject="Factuur F-7 van Zon",
        source=SourceDocument(
            connection_id=connection, division=1, entity="SalesInvoices", id=uuid4(), number="F-7"
        ),
        fact="invoice_issued",
    )


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[tuple[str, SimTwilioAdmin]]:
    async with serve(SimSettings(http_port=0)) as url, SimTwilioAdmin(url) as admin:
        yield url, admin


@pytest_asyncio.fixture
async def pool(private_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with db.pool(private_database_url) as pool:
        await db.migrate(pool, "dispatch", "dispatcher")
        yield pool


def email_notifier(url: str, http: HttpClient, own: dict[str, ChannelCredentials]):  # type: ignore[no-untyped-def]
    settings = ServiceSettings(sendgrid_api_base_url=url, email_from_name="Zon Billing")
    return SendGridNotifier(http, EmailAccounts(settings, Lookup(own)), resolve_after=600)


async def test_an_email_has_a_text_and_an_escaped_html_part_and_carries_the_notification_id(sim):
    url, admin = sim
    cmd = command("email", "sem@example.org")
    async with HttpClient(url) as http:
        receipt = await email_notifier(url, http, {}).send(cmd)
    [mail] = await admin.emails()
    assert receipt.provider_id == mail["message_id"]
    body = mail["body"]
    assert body["from"] == {"email": ServiceSettings().email_from, "name": "Zon Billing"}
    assert body["personalizations"] == [
        {"to": [{"email": "sem@example.org", "name": "Sem de Vries"}]}
    ]
    assert body["subject"] == "Factuur F-7 van Zon"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["content"][0]["value"] == cmd.content
    html = body["content"][1]["value"]
    assert "&lt;voor&gt;" in html
    assert "<voor>" not in html
    assert html.count("<p") == 2  # one paragraph per blank-line-separated block
    assert body["custom_args"] == {"mlc_notification_id": str(cmd.notification_id)}


async def test_a_connection_with_its_own_sendgrid_key_and_sender_sends_with_them(sim):
    url, admin = sim
    own = {
        "acme": ChannelCredentials(
            connection_id="acme",
            sendgrid_api_key=SecretStr("SG.wrong-key"),
            email_from="facturen@acme.example",
            email_reply_to="debiteuren@acme.example",
        )
    }
    async with HttpClient(url) as http:
        notifier = email_notifier(url, http, own)
        with pytest.raises(TransientError) as refused:
            await notifier.send(command("email", "a@example.org", connection="acme"))
        # the simulator knows only its own key: the connection's sends wait for a fixed one
        assert refused.value.code == "credentials"
        assert refused.value.retry_after == 1800
        own["acme"] = own["acme"].model_copy(
            update={"sendgrid_api_key": ServiceSettings().sendgrid_api_key}
        )
        await notifier.send(command("email", "a@example.org", connection="acme"))
    [mail] = await admin.emails()
    assert mail["body"]["from"]["email"] == "facturen@acme.example"
    assert mail["body"]["reply_to"] == {"email": "debiteuren@acme.example"}


async def test_sendgrid_500_and_429_are_retried_and_a_400_is_permanent(sim):
    url, admin = sim
    async with HttpClient(url) as http:
        notifier = email_notifier(url, http, {})
        await admin.inject(kind="http_500", api="mail", to="x@example.org")
        with pytest.raises(TransientError):
            await notifier.send(command("email", "x@example.org"))
        await admin.inject(kind="http_429", api="mail", to="x@example.org")
        with pytest.raises(TransientError):
            await notifier.send(command("email", "x@example.org"))
        await admin.inject(kind="reject", api="mail", to="x@example.org", status=400, count=1)
        with pytest.raises(PermanentError) as refused:
            await notifier.send(command("email", "x@example.org"))
    assert refused.value.code == 400
    assert await admin.emails() == []


async def test_a_call_reads_the_message_twice_in_the_recipients_language_with_machine_detection(
    sim,
):
    url, admin = sim
    settings = ServiceSettings(twilio_api_base_url=url)
    async with HttpClient(url) as http:
        notifier = TwilioNotifier(http, TwilioAccounts(settings, Lookup({})))
        receipt = await notifier.send(command("voice", "+31201234567", language="de"))
    assert receipt.provider_id.startswith("CA")
    [post] = await admin.requests("Calls.json", method="POST")
    form = post["form"]
    fields = dict(form)
    assert fields["From"] == settings.twilio_voice_from
    assert [v for k, v in form if k == "StatusCallbackEvent"] == [
        "initiated",
        "ringing",
        "answered",
        "completed",
    ]
    assert fields["StatusCallback"].endswith("/webhooks/twilio/voice-status")
    assert (fields["MachineDetection"], fields["AsyncAmd"]) == ("DetectMessageEnd", "true")
    assert fields["AsyncAmdStatusCallback"] == fields["StatusCallback"]
    twiml = fields["Twiml"]
    assert twiml.count('<Say voice="Polly.Marlene" language="de-DE">') == 2
    assert "&lt;voor&gt;" in twiml


async def test_a_suppressed_address_is_skipped_as_opted_out_and_never_sent(sim, pool):
    url, admin = sim
    suppressions = PostgresSuppressions(pool)
    claims = PostgresClaimStore(pool, stale_seconds=60)
    assert (
        await suppressions.add(
            "*", ("sms", "voice"), "+31612340001", reason="opted_out", source="inbound:STOP"
        )
        == 2
    )
    # again: nothing new, no second event
    assert (
        await suppressions.add(
            "*", ("sms",), "+31612340001", reason="opted_out", source="inbound:STOP"
        )
        == 0
    )
    settings = ServiceSettings(twilio_api_base_url=url)
    cmd = command("sms", "+31612340001", connection="acme")
    async with HttpClient(url) as http:
        notifier = TwilioNotifier(http, TwilioAccounts(settings, Lookup({})))
        await send_notification(cmd, claims=claims, notifier=notifier, suppressions=suppressions)
        await send_notification(cmd, claims=claims, notifier=notifier, suppressions=suppressions)
    assert await admin.requests("Messages.json", method="POST") == []
    state = await pool.fetchval(
        "SELECT state FROM dispatch.claims WHERE idempotency_key = $1", cmd.idempotency_key
    )
    assert state == "skipped"
    events = [
        (r["message_type"], json.loads(r["body"]))
        for r in await pool.fetch(
            "SELECT message_type, body::text FROM dispatch.outbox ORDER BY id"
        )
    ]
    assert [t for t, _ in events] == [
        "suppression.added",
        "suppression.added",
        NotificationSkipped.routing_key,
    ]
    skipped = events[-1][1]
    assert (skipped["reason"], skipped["notification_id"]) == (
        "opted_out",
        str(cmd.notification_id),
    )
    added = SuppressionChanged.model_validate(events[0][1])
    assert added.address_key == address_key("+31612340001")
    assert "+31612340001" not in json.dumps([b for _, b in events])  # masked, never in clear


async def test_twilio_21610_fails_the_send_and_suppresses_the_number_for_sms_and_calls(sim, pool):
    url, admin = sim
    suppressions = PostgresSuppressions(pool)
    claims = PostgresClaimStore(pool, stale_seconds=60)
    await admin.reject(to="+31612340002", code=21610)
    settings = ServiceSettings(twilio_api_base_url=url)
    async with HttpClient(url) as http:
        notifier = TwilioNotifier(http, TwilioAccounts(settings, Lookup({})))
        with pytest.raises(PermanentError):
            await send_notification(
                command("sms", "+31612340002"),
                claims=claims,
                notifier=notifier,
                suppressions=suppressions,
            )
    for channel in ("sms", "voice"):
        found = await suppressions.find("default", channel, "+31612340002")
        assert found is not None
        assert (found.reason, found.source) == ("opted_out", "twilio:21610")
    assert await suppressions.find("default", "email", "+31612340002") is None


def inbound(kind: str, sender: str, connection: str | None = None) -> InboundSms:
    return InboundSms(
        connection_id=connection,
        message_sid="SM" + uuid4().hex,
        from_number=sender,
        to_number="+3197010000000",
        kind=kind,  # type: ignore[arg-type]
        keyword=kind.upper(),
        received_at=datetime.now(UTC),
    )


async def test_stop_to_the_shared_number_holds_for_every_connection_and_start_lifts_it(pool):
    suppressions = PostgresSuppressions(pool)
    claims = PostgresClaimStore(pool, stale_seconds=60)
    await feeds.on_inbound(
        inbound("stop", "+31612340003"), suppressions=suppressions, claims=claims
    )
    assert await suppressions.find("acme", "sms", "+31612340003") is not None
    assert await suppressions.find("other", "voice", "+31 6 12340003".replace(" ", "")) is not None
    # an operator's suppression of the same number is not an opt-out: START leaves it
    await suppressions.add("acme", ("sms",), "+31612340003", reason="operator", source="operator")
    await feeds.on_inbound(
        inbound("start", "+31612340003"), suppressions=suppressions, claims=claims
    )
    assert await suppressions.find("other", "sms", "+31612340003") is None
    still = await suppressions.find("acme", "sms", "+31612340003")
    assert still is not None
    assert still.reason == "operator"


def email_event(event: str, address: str, nid: str | None = None, **extra: str) -> EmailEvent:
    return EmailEvent(
        event=event,
        sg_event_id=uuid4().hex,
        sg_message_id="abc123.filter0",
        notification_id=nid,
        email=address,
        received_at=datetime.now(UTC),
        raw={},
        **extra,
    )


async def test_a_hard_bounce_suppresses_the_address_and_a_soft_one_does_not(pool):
    suppressions = PostgresSuppressions(pool)
    claims = PostgresClaimStore(pool, stale_seconds=60)
    ports = {"suppressions": suppressions, "claims": claims}
    await feeds.on_email_event(email_event("bounce", "soft@example.org", type="blocked"), **ports)
    await feeds.on_email_event(email_event("bounce", "Hard@Example.org", type="bounce"), **ports)
    await feeds.on_email_event(email_event("spamreport", "spam@example.org"), **ports)
    await feeds.on_email_event(
        email_event("dropped", "gone@example.org", reason="Unsubscribed Address"), **ports
    )
    assert await suppressions.find("x", "email", "soft@example.org") is None
    reasons = {
        a: (await suppressions.find("x", "email", a)).reason  # type: ignore[union-attr]
        for a in ("hard@example.org", "spam@example.org", "gone@example.org")
    }
    assert reasons == {
        "hard@example.org": "bounced",
        "spam@example.org": "spam_report",
        "gone@example.org": "unsubscribed",
    }


async def sent_sms(
    url: str,
    pool: asyncpg.Pool,
    claims: PostgresClaimStore,
    suppressions: PostgresSuppressions,
    to: str,
) -> str:
    """Send one SMS of connection acme through the simulator; its SID."""
    cmd = command("sms", to, connection="acme")
    settings = ServiceSettings(twilio_api_base_url=url)
    async with HttpClient(url) as http:
        notifier = TwilioNotifier(http, TwilioAccounts(settings, Lookup({})))
        await send_notification(cmd, claims=claims, notifier=notifier, suppressions=suppressions)
    return str(
        await pool.fetchval(
            "SELECT provider_id FROM dispatch.claims WHERE idempotency_key = $1",
            cmd.idempotency_key,
        )
    )


async def test_an_sms_undelivered_to_a_landline_suppresses_sms_but_not_calls(sim, pool):
    url, _ = sim
    suppressions = PostgresSuppressions(pool)
    claims = PostgresClaimStore(pool, stale_seconds=60)
    sid = await sent_sms(url, pool, claims, suppressions, "+31201234568")
    status = TwilioStatus(
        provider_id=sid,
        status="undelivered",
        error_code="30006",
        raw={},
        received_at=datetime.now(UTC),
    )
    await feeds.on_message_status(status, suppressions=suppressions, claims=claims)
    landline = await suppressions.find("acme", "sms", "+31201234568")
    assert landline is not None
    assert landline.reason == "undeliverable"
    assert await suppressions.find("acme", "voice", "+31201234568") is None
    assert await suppressions.find("other", "sms", "+31201234568") is None  # acme's lesson only


async def test_an_email_whose_send_had_no_answer_is_settled_sent_by_its_processed_event(pool):
    claims = PostgresClaimStore(pool, stale_seconds=60)
    suppressions = PostgresSuppressions(pool)
    cmd = command("email", "late@example.org")
    assert (await claims.claim(cmd)).outcome == "claimed"
    event = email_event("processed", "late@example.org", str(cmd.notification_id))
    await feeds.on_email_event(event, suppressions=suppressions, claims=claims)
    row = await pool.fetchrow(
        "SELECT state, provider_id FROM dispatch.claims WHERE idempotency_key = $1",
        cmd.idempotency_key,
    )
    assert (row["state"], row["provider_id"]) == ("sent", "abc123")
    assert (await claims.claim(cmd)).outcome == "sent"  # a copy of the command sends nothing


async def test_a_status_signed_for_another_connection_suppresses_nothing(sim, pool):
    url, _ = sim
    suppressions = PostgresSuppressions(pool)
    claims = PostgresClaimStore(pool, stale_seconds=60)
    sid = await sent_sms(url, pool, claims, suppressions, "+31201234569")

    def status(signed_for: str | None) -> TwilioStatus:
        return TwilioStatus(
            provider_id=sid,
            status="undelivered",
            error_code="30005",
            raw={},
            received_at=datetime.now(UTC),
            connection_id=signed_for,
        )

    await feeds.on_message_status(status("rival"), suppressions=suppressions, claims=claims)
    assert await suppressions.find("acme", "sms", "+31201234569") is None
    await feeds.on_message_status(status("acme"), suppressions=suppressions, claims=claims)
    assert await suppressions.find("acme", "sms", "+31201234569") is not None


async def test_an_email_event_signed_for_another_connection_suppresses_nothing(pool):
    claims = PostgresClaimStore(pool, stale_seconds=60)
    suppressions = PostgresSuppressions(pool)
    cmd = command("email", "mine@example.org", connection="acme")
    assert (await claims.claim(cmd)).outcome == "claimed"
    forged = email_event("spamreport", "mine@example.org", str(cmd.notification_id)).model_copy(
        update={"connection_id": "rival"}
    )
    await feeds.on_email_event(forged, suppressions=suppressions, claims=claims)
    assert await suppressions.find("acme", "email", "mine@example.org") is None


async def test_refused_twilio_credentials_make_sends_wait_and_a_full_queue_slows_them(sim):
    url, admin = sim
    wrong = ServiceSettings(twilio_api_base_url=url, twilio_auth_token=SecretStr("wrong"))
    async with HttpClient(url) as http:
        notifier = TwilioNotifier(http, TwilioAccounts(wrong, Lookup({})))
        with pytest.raises(TransientError) as refused:
            await notifier.send(command("sms", "+31612340077"))
        assert (refused.value.code, refused.value.retry_after) == ("credentials", 1800)

        right = ServiceSettings(twilio_api_base_url=url)
        notifier = TwilioNotifier(http, TwilioAccounts(right, Lookup({})))
        await admin.reject(to="+31612340078", code=21611, status=400, count=1)
        with pytest.raises(TransientError) as queued:
            await notifier.send(command("sms", "+31612340078"))
        assert queued.value.code == 21611
        assert queued.value.retry_after is not None
        assert queued.value.retry_after >= 600


async def test_statuses_published_together_suppress_as_each_would_have_alone(sim, pool):
    url, _ = sim
    suppressions = PostgresSuppressions(pool)
    claims = PostgresClaimStore(pool, stale_seconds=60)
    numbers = ("+31201234571", "+31201234572", "+31201234573")
    sids = [await sent_sms(url, pool, claims, suppressions, n) for n in numbers]

    def undelivered(sid: str, code: str | None, signed_for: str | None) -> TwilioStatus:
        return TwilioStatus(
            provider_id=sid,
            status="undelivered",
            error_code=code,
            raw={},
            received_at=datetime.now(UTC),
            connection_id=signed_for,
        )

    batch = TwilioStatuses(
        statuses=[
            undelivered(sids[0], "30005", "acme"),  # unknown handset: suppressed
            undelivered(sids[1], None, None),  # no code: nothing learnt
            undelivered(sids[2], "30005", "rival"),  # another company's signature: ignored
        ]
    )
    # as the consumer gets it: chosen by the message type, decoded from the wire
    model, handler = feeds.routes(suppressions=suppressions, claims=claims)["twilio.statuses."]
    assert batch.message_type() == "twilio.statuses.undelivered"
    assert batch.key() == "twilio.status.undelivered"
    await handler(model.model_validate_json(batch.model_dump_json()))
    assert (await suppressions.find("acme", "sms", numbers[0])) is not None
    assert await suppressions.find("acme", "sms", numbers[1]) is None
    assert await suppressions.find("acme", "sms", numbers[2]) is None


async def test_concurrent_suppression_look_ups_each_find_their_own_address_and_scope(pool):
    suppressions = PostgresSuppressions(pool)
    numbers = [f"+3120999{n:04d}" for n in range(30)]
    for n, number in enumerate(numbers):
        if n % 3 == 0:
            await suppressions.add("*", ("sms",), number, reason="opted_out", source="inbound")
        elif n % 3 == 1:
            await suppressions.add("acme", ("sms", "voice"), number, reason="undeliverable",
                                   source="twilio:30005")  # fmt: skip
    asked = [(scope, channel, number) for number in numbers for scope in ("acme", "rival")
             for channel in ("sms", "voice")]  # fmt: skip
    found = await asyncio.gather(*(suppressions.find(*question) for question in asked))
    for (scope, channel, number), hit in zip(asked, found, strict=True):
        n = numbers.index(number)
        if n % 3 == 0 and channel == "sms":  # the install's list holds for every connection
            assert hit is not None
            assert (hit.connection_id, hit.reason) == ("*", "opted_out")
        elif n % 3 == 1 and scope == "acme":  # acme's lesson, for acme only
            assert hit is not None
            assert (hit.connection_id, hit.channel) == ("acme", channel)
        else:
            assert hit is None, (scope, channel, n)
    assert suppressions._lookups.fetches < len(asked) / 4  # looked up together
