"""The dispatcher's handler with fake ports: claims decide, the notifier is called at most once."""

from __future__ import annotations

from uuid import uuid4

import pytest

from common.contracts import (
    NotificationAmbiguous,
    NotificationFailed,
    NotificationSent,
    Recipient,
    SendNotification,
    SourceDocument,
)
from common.errors import AmbiguousOutcome, PermanentError, TransientError
from dispatcher.handlers import send_notification
from dispatcher.ports import Claim, SendReceipt


class FakeClaimStore:
    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.stale: set[str] = set()

    async def claim(self, key: str, notification_id: str, channel: str) -> Claim:
        state = self.states.get(key)
        if state in (None, "released"):
            self.states[key] = "sending"
            self.attempts[key] = self.attempts.get(key, 0) + 1
            return Claim("claimed", self.attempts[key])
        if state == "sending":
            return Claim("stale" if key in self.stale else "in_flight", self.attempts[key])
        return Claim(state, self.attempts[key])  # type: ignore[arg-type]

    async def mark(
        self, key: str, state: str, *, provider_id: str | None = None, error_code: str | None = None
    ) -> None:
        self.states[key] = state


class FakeNotifier:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.sent: list[tuple[str, str]] = []

    async def send_sms(self, to: str, body: str, *, connection_id: str) -> SendReceipt:
        self.sent.append((to, body))
        if self.errors:
            raise self.errors.pop(0)
        return SendReceipt(provider_id="SM" + "a" * 32, status="accepted")


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


async def test_a_claimed_notification_is_sent_once_and_reported_sent():
    claims, notifier, cmd = FakeClaimStore(), FakeNotifier(), command()
    out = await send_notification(cmd, claims=claims, notifier=notifier)
    assert [type(m) for m in out] == [NotificationSent]
    assert out[0].provider_id == "SM" + "a" * 32  # type: ignore[attr-defined]
    assert claims.states[cmd.idempotency_key] == "sent"
    assert await send_notification(cmd, claims=claims, notifier=notifier) == []
    assert len(notifier.sent) == 1


async def test_a_transient_failure_releases_the_claim_so_the_retry_can_send():
    claims, cmd = FakeClaimStore(), command()
    notifier = FakeNotifier(TransientError("500"))
    with pytest.raises(TransientError):
        await send_notification(cmd, claims=claims, notifier=notifier)
    assert claims.states[cmd.idempotency_key] == "released"
    out = await send_notification(cmd, claims=claims, notifier=notifier)
    assert out[0].attempt == 2  # type: ignore[attr-defined]
    assert len(notifier.sent) == 2


async def test_a_permanent_failure_is_marked_failed_and_carries_the_failed_fact():
    claims, cmd = FakeClaimStore(), command()
    notifier = FakeNotifier(PermanentError("invalid number", code=21211))
    with pytest.raises(PermanentError) as raised:
        await send_notification(cmd, claims=claims, notifier=notifier)
    assert claims.states[cmd.idempotency_key] == "failed"
    (fact,) = raised.value.facts
    assert isinstance(fact, NotificationFailed)
    assert fact.error_code == "21211"
    assert await send_notification(cmd, claims=claims, notifier=notifier) == []
    assert len(notifier.sent) == 1


async def test_an_ambiguous_send_is_never_retried():
    claims, cmd = FakeClaimStore(), command()
    notifier = FakeNotifier(AmbiguousOutcome("read timeout"))
    out = await send_notification(cmd, claims=claims, notifier=notifier)
    assert [type(m) for m in out] == [NotificationAmbiguous]
    assert await send_notification(cmd, claims=claims, notifier=notifier) == []
    assert len(notifier.sent) == 1


async def test_a_claim_held_by_another_sender_is_retried_later_and_a_stale_one_is_ambiguous():
    claims, notifier, cmd = FakeClaimStore(), FakeNotifier(), command()
    claims.states[cmd.idempotency_key] = "sending"
    claims.attempts[cmd.idempotency_key] = 1
    with pytest.raises(TransientError):
        await send_notification(cmd, claims=claims, notifier=notifier)
    claims.stale.add(cmd.idempotency_key)
    out = await send_notification(cmd, claims=claims, notifier=notifier)
    assert [type(m) for m in out] == [NotificationAmbiguous]
    assert notifier.sent == []
