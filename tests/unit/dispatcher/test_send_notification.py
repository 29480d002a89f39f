"""The dispatcher's handler with fake ports: claims decide, the notifier is called at most
once per claim, and every attempt leaves exactly one event for the outbox."""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4

import pytest

from common.contracts import (
    Message,
    NotificationAmbiguous,
    NotificationDeferred,
    NotificationFailed,
    NotificationSent,
    Recipient,
    SendNotification,
    SourceDocument,
)
from common.errors import AmbiguousOutcome, PermanentError, TransientError
from dispatcher.handlers import failure_reason, send_notification
from dispatcher.ports import Claim, SendReceipt, Unsettled


class FakeClaimStore:
    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.retry_after: dict[str, float] = {}
        self.stale: set[str] = set()
        self.outbox: list[Message] = []
        self.reasons: dict[str, str | None] = {}

    async def claim(self, command: SendNotification) -> Claim:
        key = command.idempotency_key
        state = self.states.get(key)
        if state == "released" and key in self.retry_after:
            return Claim("deferred", self.attempts[key], retry_after=self.retry_after[key])
        if state in (None, "released"):
            self.states[key] = "sending"
            self.attempts[key] = self.attempts.get(key, 0) + 1
            return Claim("claimed", self.attempts[key], budget_used=self.attempts[key])
        if state == "sending":
            return Claim("stale" if key in self.stale else "in_flight", self.attempts[key])
        return Claim(state, self.attempts[key])  # type: ignore[arg-type]

    async def settle(
        self,
        key: str,
        state: str,
        event: Message,
        *,
        provider_id: str | None = None,
        error_code: str | None = None,
        reason: str | None = None,
        retry_at: datetime | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.states[key] = state
        self.reasons[key] = reason
        self.outbox.append(event)

    async def release(
        self, notification_id: str, *, requested_by: str | None, correlation_id: str | None
    ) -> bool:
        return False

    async def unsettled(self, *, limit: int) -> list[Unsettled]:
        return []

    async def retake(self, key: str) -> Claim:
        return Claim("in_flight", 0)


class FakeNotifier:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.sent: list[tuple[str, str]] = []

    async def send(self, command: SendNotification) -> SendReceipt:
        self.sent.append((command.recipient.address, command.content))
        if self.errors:
            raise self.errors.pop(0)
        return SendReceipt(provider_id="SM" + "a" * 32, status="accepted")

    async def find(self, command: SendNotification, *, since: datetime) -> SendReceipt | None:
        return None

    async def fetch(
        self, provider_id: str, *, connection_id: str, channel: str | None
    ) -> SendReceipt:
        return SendReceipt(provider_id, "delivered")


def command(channel: str = "sms") -> SendNotification:
    return SendNotification(
        notification_id=uuid4(),
        idempotency_key=uuid4().hex,
        channel=channel,  # type: ignore[arg-type]
        recipient=Recipient(address="+31612345678"),
        template="t",
        content="hello",
        source=SourceDocument(
            connection_id="default", division=1, entity="SalesInvoices", id=uuid4()
        ),
        fact="invoice_issued",
    )


async def test_a_claimed_notification_is_sent_once_and_its_sent_fact_queued():
    claims, notifier, cmd = FakeClaimStore(), FakeNotifier(), command()
    assert await send_notification(cmd, claims=claims, notifier=notifier) == []
    assert [type(m) for m in claims.outbox] == [NotificationSent]
    assert claims.outbox[0].provider_id == "SM" + "a" * 32  # type: ignore[attr-defined]
    assert claims.states[cmd.idempotency_key] == "sent"
    assert await send_notification(cmd, claims=claims, notifier=notifier) == []
    assert len(notifier.sent) == 1
    assert len(claims.outbox) == 1


async def test_a_transient_failure_releases_the_claim_and_records_a_deferred_attempt():
    claims, cmd = FakeClaimStore(), command()
    notifier = FakeNotifier(TransientError("500", code=20500))
    with pytest.raises(TransientError):
        await send_notification(cmd, claims=claims, notifier=notifier)
    assert claims.states[cmd.idempotency_key] == "released"
    (deferred,) = claims.outbox
    assert isinstance(deferred, NotificationDeferred)
    assert deferred.error_code == "20500"
    await send_notification(cmd, claims=claims, notifier=notifier)
    assert claims.outbox[-1].attempt == 2  # type: ignore[attr-defined]
    assert len(notifier.sent) == 2


async def test_a_copy_arriving_before_retry_after_waits_without_sending():
    claims, cmd = FakeClaimStore(), command()
    claims.states[cmd.idempotency_key] = "released"
    claims.attempts[cmd.idempotency_key] = 1
    claims.retry_after[cmd.idempotency_key] = 9.5
    notifier = FakeNotifier()
    with pytest.raises(TransientError) as raised:
        await send_notification(cmd, claims=claims, notifier=notifier)
    assert raised.value.retry_after == 9.5
    assert notifier.sent == []


async def test_the_attempt_bound_turns_the_last_transient_failure_into_failed_exhausted():
    claims, cmd = FakeClaimStore(), command()
    notifier = FakeNotifier(*[TransientError("429", code=20429) for _ in range(3)])
    for _ in range(2):
        with pytest.raises(TransientError):
            await send_notification(cmd, claims=claims, notifier=notifier, max_attempts=3)
    with pytest.raises(PermanentError) as raised:
        await send_notification(cmd, claims=claims, notifier=notifier, max_attempts=3)
    assert raised.value.error_class == "exhausted"
    assert claims.states[cmd.idempotency_key] == "failed"
    failed = claims.outbox[-1]
    assert isinstance(failed, NotificationFailed)
    assert failed.reason == "exhausted"
    assert await send_notification(cmd, claims=claims, notifier=notifier, max_attempts=3) == []
    assert len(notifier.sent) == 3


async def test_a_permanent_failure_is_failed_with_its_reason_and_never_sent_by_a_replay():
    claims, cmd = FakeClaimStore(), command()
    notifier = FakeNotifier(PermanentError("invalid number", code=21211))
    with pytest.raises(PermanentError) as raised:
        await send_notification(cmd, claims=claims, notifier=notifier)
    assert raised.value.facts == ()  # the outbox carries the fact, not the exception
    assert claims.states[cmd.idempotency_key] == "failed"
    (fact,) = claims.outbox
    assert isinstance(fact, NotificationFailed)
    assert (fact.error_code, fact.reason) == ("21211", "invalid_number")
    assert await send_notification(cmd, claims=claims, notifier=notifier) == []
    assert len(notifier.sent) == 1


async def test_an_ambiguous_send_is_never_retried_by_a_copy():
    claims, cmd = FakeClaimStore(), command()
    notifier = FakeNotifier(AmbiguousOutcome("read timeout"))
    assert await send_notification(cmd, claims=claims, notifier=notifier) == []
    assert [type(m) for m in claims.outbox] == [NotificationAmbiguous]
    assert await send_notification(cmd, claims=claims, notifier=notifier) == []
    assert len(notifier.sent) == 1


async def test_a_claim_held_by_another_sender_is_retried_and_a_stale_one_left_to_the_resolver():
    claims, notifier, cmd = FakeClaimStore(), FakeNotifier(), command()
    claims.states[cmd.idempotency_key] = "sending"
    claims.attempts[cmd.idempotency_key] = 1
    with pytest.raises(TransientError):
        await send_notification(cmd, claims=claims, notifier=notifier)
    claims.stale.add(cmd.idempotency_key)
    assert await send_notification(cmd, claims=claims, notifier=notifier) == []
    assert notifier.sent == []
    assert claims.outbox == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (21211, "invalid_number"),
        (21614, "invalid_number"),
        (21610, "opted_out"),
        (20003, "provider_error"),
        (21408, "provider_error"),
    ],
)
def test_twilio_codes_map_to_the_operators_failure_reasons(code: int, reason: str):
    assert failure_reason(code) == reason
