"""Nothing lost, nothing twice: the dispatcher's claims and outbox, the resolver and the
auditor's trail, against the real broker and database and the Twilio simulator (the
``stack`` fixture of this folder's conftest)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import aio_pika
import asyncpg
import pytest

from auditor.status_checks import due_checks
from common import topology
from common.contracts import (
    NotificationAmbiguous,
    NotificationDeferred,
    NotificationFailed,
    NotificationSent,
    TwilioStatus,
)
from common.metrics import make_registry
from common.testing import eventually
from dispatcher import outbox
from dispatcher.metrics import DispatchMetrics
from dispatcher.resolver import resolve_due

pytestmark = pytest.mark.integration

Stack = Any  # conftest.Stack: conftest modules are not importable by name here


async def outcomes(stack: Stack, nid: object) -> list[str]:
    return [a["outcome"] for a in (await stack.notification(nid))["attempts"]]


async def probe_queue(stack: Stack, routing_key: str) -> aio_pika.abc.AbstractQueue:
    channel = await stack.broker.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(topology.EVENTS, routing_key=routing_key)
    return queue


async def resolve(stack: Stack) -> list[str]:
    return await resolve_due(
        claims=stack.claims, notifier=stack.notifier, max_attempts=stack.max_attempts
    )


# --- the claim store and the trail's SQL -------------------------------------------------


async def test_of_two_racing_copies_exactly_one_takes_the_claim(stack: Stack):
    command = stack.command("+31611110001")
    first, second = await asyncio.gather(stack.claims.claim(command), stack.claims.claim(command))
    assert sorted([first.outcome, second.outcome]) == ["claimed", "in_flight"]
    row = await stack.claim_state(command.idempotency_key)
    assert (row["state"], row["attempts"]) == ("sending", 1)
    assert row["command"]["content"] == command.content  # kept for the resolver


async def test_a_released_claim_waits_for_retry_after_whichever_copy_comes(stack: Stack):
    command = stack.command("+31611110002")
    await stack.claims.claim(command)
    retry_at = datetime.now(UTC).replace(microsecond=0) + (
        datetime(2000, 1, 1, 0, 0, 30, tzinfo=UTC) - datetime(2000, 1, 1, tzinfo=UTC)
    )
    await stack.claims.settle(
        command.idempotency_key,
        "released",
        NotificationDeferred(
            notification_id=command.notification_id, attempt=1, error_class="transient"
        ),
        retry_at=retry_at,
    )
    copy = await stack.claims.claim(command)
    assert copy.outcome == "deferred"
    assert 20 < (copy.retry_after or 0) <= 30


async def test_a_failed_claim_is_reopened_only_by_a_release(stack: Stack):
    command = stack.command("+31611110003")
    await stack.claims.claim(command)
    failed = NotificationFailed(
        notification_id=command.notification_id, attempt=1, error_class="permanent"
    )
    await stack.claims.settle(command.idempotency_key, "failed", failed, reason="invalid_number")
    assert (await stack.claims.claim(command)).outcome == "failed"  # a replayed copy
    released = await stack.claims.release(
        str(command.notification_id), requested_by="ops", correlation_id=None
    )
    assert released
    again = await stack.claims.claim(command)
    assert (again.outcome, again.attempts, again.budget_used) == ("claimed", 2, 1)
    assert not await stack.claims.release(
        str(command.notification_id), requested_by="ops", correlation_id=None
    )


async def test_a_claim_left_released_by_parked_copies_can_be_released_by_an_operator(
    bare_stack: Stack,
):
    stack = bare_stack  # no relay: the queued events stay in the outbox to be read
    command = stack.command("+31611110017")
    await stack.claims.claim(command)
    deferred = NotificationDeferred(
        notification_id=command.notification_id, attempt=1, error_class="transient"
    )
    await stack.claims.settle(command.idempotency_key, "released", deferred)
    # ... and every copy then used up its retry tiers in the DLQ
    assert await stack.claims.release(
        str(command.notification_id), requested_by="ops", correlation_id=None
    )
    row = await stack.claim_state(command.idempotency_key)
    assert (row["state"], row["budget_from"]) == ("released", 1)
    pending = await stack.pool.fetch(
        "SELECT message_type FROM dispatch.outbox WHERE relayed_at IS NULL ORDER BY id"
    )
    assert [r["message_type"] for r in pending] == [
        "notification.deferred",
        "notification.released",
    ]


async def test_the_trail_state_only_moves_forward_whatever_order_events_arrive_in(stack: Stack):
    nid, sid = uuid4(), "SM" + uuid4().hex
    sent = NotificationSent(notification_id=nid, attempt=1, provider_id=sid)
    late_ambiguous = NotificationAmbiguous(notification_id=nid, attempt=1, error="timeout")
    old_deferred = NotificationDeferred(notification_id=nid, attempt=1, error_class="transient")
    for event in (sent, late_ambiguous, old_deferred, sent):
        await stack.trail.outcome(event.message_id(), event)
    row = await stack.trail.notification(nid)
    assert (row["state"], row["provider_id"]) == ("sent", sid)
    attempts = await stack.pool.fetchval(
        "SELECT count(*) FROM audit.attempts WHERE notification_id = $1", nid
    )
    assert attempts == 3  # the repeated sent is stored once
    for status in ("delivered", "sent", "delivered", "queued"):
        await stack.trail.status(
            TwilioStatus(provider_id=sid, status=status, raw={}, received_at=datetime.now(UTC))
        )
    current = await stack.pool.fetchrow(
        "SELECT status FROM audit.statuses WHERE provider_id = $1", sid
    )
    assert current["status"] == "delivered"
    repeats = await stack.pool.fetchval(
        "SELECT repeats FROM audit.status_events WHERE provider_id = $1 AND status = 'delivered'",
        sid,
    )
    assert repeats == 1


async def test_a_failure_without_a_reason_is_filed_exhausted_when_its_retries_ran_out(
    stack: Stack,
):
    ran_out, refused = uuid4(), uuid4()
    for nid, error_class in ((ran_out, "transient"), (refused, "permanent")):
        event = NotificationFailed(notification_id=nid, attempt=5, error_class=error_class)
        await stack.trail.outcome(event.message_id(), event)
    assert (await stack.trail.notification(ran_out))["failure_reason"] == "exhausted"
    assert (await stack.trail.notification(refused))["failure_reason"] == "provider_error"


async def test_a_status_callback_before_the_send_is_recorded_joins_the_notification(
    stack: Stack,
):
    command = stack.command("+31611110004")
    sid = "SM" + uuid4().hex
    await stack.publisher.publish(
        TwilioStatus(
            provider_id=sid,
            status="delivered",
            raw={"MessageSid": sid},
            received_at=datetime.now(UTC),
        )
    )
    await eventually(
        lambda: stack.pool.fetchval("SELECT status FROM audit.statuses WHERE provider_id=$1", sid),
        until=lambda s: s == "delivered",
        what="orphan status stored",
    )
    await stack.trail.requested(command)
    event = NotificationSent(notification_id=command.notification_id, attempt=1, provider_id=sid)
    await stack.publisher.publish(event)
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "sent",
        what="sent recorded",
    )
    assert entry["delivery_status"] == "delivered"
    assert [e["status"] for e in entry["status_history"]] == ["delivered"]


# --- the outbox ---------------------------------------------------------------------------


async def test_a_sent_claim_whose_publish_was_abandoned_is_still_reported_sent(bare_stack: Stack):
    stack = bare_stack  # no relay: the process "dies" between the commit and the publish
    probe = await probe_queue(stack, "notification.sent")
    command = stack.command("+31611110005")
    await stack.send(command)
    row = await eventually(
        lambda: stack.claim_state(command.idempotency_key),
        until=lambda r: r is not None and r["state"] == "sent",
        what="claim sent",
    )
    assert len(await stack.posts("+31611110005")) == 1
    assert await probe.get(fail=False, timeout=1) is None  # nothing published yet
    # A relay that locked the batch and died before marking it (connection cut mid-publish)
    crashed = await asyncpg.connect(stack.pool._connect_args[0])
    transaction = crashed.transaction()
    await transaction.start()
    locked = await crashed.fetch(
        "SELECT id FROM dispatch.outbox WHERE relayed_at IS NULL FOR UPDATE"
    )
    assert locked
    crashed.terminate()
    # ... and the next relay publishes it, confirmed, once (as soon as the server has
    # noticed the dead connection and dropped its locks)
    relayed = await eventually(
        lambda: outbox.relay_once(stack.pool, stack.publisher), until=lambda n: n == 1
    )
    assert relayed == 1
    assert await outbox.relay_once(stack.pool, stack.publisher) == 0
    message = await probe.get(timeout=5)
    sent = NotificationSent.model_validate_json(message.body)
    assert sent.notification_id == command.notification_id
    assert sent.provider_id == row["provider_id"]
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "sent",
        what="trail sent",
    )
    assert entry["provider_id"] == row["provider_id"]


async def test_a_relay_whose_broker_refuses_deletes_nothing_and_loses_nothing(bare_stack: Stack):
    stack = bare_stack
    command = stack.command("+31611110006")
    await stack.claims.claim(command)
    sent = NotificationSent(notification_id=command.notification_id, attempt=1, provider_id="SMx")
    await stack.claims.settle(command.idempotency_key, "sent", sent, provider_id="SMx")

    class BrokenPublisher:
        async def publish(self, message: object, *, correlation_id: str | None = None) -> None:
            raise ConnectionResetError("broker gone")

    with pytest.raises(ConnectionResetError):
        await outbox.relay_once(stack.pool, BrokenPublisher())
    assert await outbox.pending(stack.pool) == 1
    # the relay loop, once the broker is back, publishes it and says nothing is pending
    registry = make_registry()
    metrics = DispatchMetrics.create(registry)
    stop = asyncio.Event()
    loop = asyncio.create_task(
        outbox.relay_forever(
            stack.pool, stack.publisher, asyncio.Event(), stop, poll_seconds=0.1, metrics=metrics
        )
    )
    try:
        await eventually(
            lambda: metrics.relayed._value.get(),
            until=lambda n: n == 1,
            what="relayed counted",
        )
        await eventually(
            lambda: metrics.pending._value.get(),
            until=lambda n: n == 0,
            what="nothing pending",
        )
    finally:
        stop.set()
        await loop
    assert await outbox.pending(stack.pool) == 0
    # relayed events leave the outbox: it holds only what is still to be published
    assert await stack.pool.fetchval("SELECT count(*) FROM dispatch.outbox") == 0


# --- failures that can be retried, and every attempt in the trail -------------------------


async def test_twilio_21211_ends_failed_with_reason_invalid_number_in_the_trail(stack: Stack):
    to = "+31611110007"
    await stack.sim.reject(to=to, code=21211)
    command = stack.command(to)
    await stack.send(command)
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "failed",
        what="failed in the trail",
    )
    assert entry["failure_reason"] == "invalid_number"
    (attempt,) = entry["attempts"]
    assert (attempt["outcome"], attempt["error_code"]) == ("failed", "21211")
    assert to not in (attempt["error"] or "")  # the number is masked in the trail
    await eventually(
        lambda: stack.depth("dispatcher.sends.dlq"), until=lambda n: n == 1, what="parked"
    )
    assert await stack.depth(topology.retry_queue_name("dispatcher.sends", 5)) == 0
    assert len(await stack.posts(to)) == 1
    failures = await stack.trail.failures(reason="invalid_number")
    assert [f["notification_id"] for f in failures] == [str(command.notification_id)]
    counted = stack.registry.get_sample_value(
        "mlc_notifications_total",
        {"channel": "sms", "outcome": "failed", "reason": "invalid_number"},
    )
    assert counted == 1


async def test_a_429_and_a_500_are_attempts_in_the_trail_before_the_send(stack: Stack):
    to = "+31611110008"
    await stack.sim.inject(kind="http_429", to=to)
    command = stack.command(to)
    await stack.send(command)
    await eventually(
        lambda: outcomes(stack, command.notification_id),
        until=lambda o: o == ["deferred"],
        what="deferred attempt",
    )
    await stack.sim.inject(kind="http_500", to=to)
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "sent",
        timeout=60,
        what="sent after two retries",
    )
    assert [(a["outcome"], a["attempt"]) for a in entry["attempts"]] == [
        ("deferred", 1),
        ("deferred", 2),
        ("sent", 3),
    ]
    assert [a["error_code"] for a in entry["attempts"][:2]] == ["20429", "20500"]
    assert len(await stack.posts(to)) == 3


async def test_a_full_sender_queue_21611_is_retried_later_not_failed(stack: Stack):
    to = "+31611110016"
    await stack.sim.reject(to=to, code=21611, count=1)
    command = stack.command(to)
    await stack.send(command)
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "retrying",
        timeout=30,
        what="deferred",
    )
    (attempt,) = entry["attempts"]
    assert (attempt["outcome"], attempt["error_code"]) == ("deferred", "21611")
    # the sender's queue holds hours of messages: not again for at least ten minutes
    assert (attempt["retry_at"] - attempt["recorded_at"]).total_seconds() >= 590
    assert await stack.depth("dispatcher.sends.dlq") == 0
    claim = await stack.claim_state(command.idempotency_key)
    assert claim["state"] == "released"


async def test_a_persistent_429_fails_exhausted_after_the_bounded_attempts(stack: Stack):
    to = "+31611110009"
    await stack.sim.inject(kind="http_429", to=to, count=50)
    command = stack.command(to)
    await stack.send(command)
    await stack.send(command)  # a second copy shares the same budget
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "failed",
        timeout=90,
        what="failed exhausted",
    )
    assert entry["failure_reason"] == "exhausted"
    assert len(await stack.posts(to)) == stack.max_attempts


async def test_twilios_retry_after_holds_back_every_copy_of_the_command(stack: Stack):
    to = "+31611110015"
    await stack.sim.inject(kind="http_429", to=to, retry_after=8)
    command = stack.command(to)
    await stack.send(command)
    row = await eventually(
        lambda: stack.claim_state(command.idempotency_key),
        until=lambda r: r is not None and r["state"] == "released",
        what="released after the 429",
    )
    assert 7 <= (row["retry_at"] - row["updated_at"]).total_seconds() <= 9
    await stack.send(command)  # a copy arriving right away does not send
    tier = topology.retry_queue_name("dispatcher.sends", 30)  # the first tier >= 8 s
    await eventually(lambda: stack.depth(tier), until=lambda n: n == 2, what="both waiting")
    assert len(await stack.posts(to)) == 1
    (deferred,) = (await stack.notification(command.notification_id))["attempts"]
    assert (deferred["outcome"], deferred["error_code"]) == ("deferred", "20429")
    assert deferred["retry_at"] is not None


# --- crashes and blips --------------------------------------------------------------------


async def test_a_connection_refused_is_retried_not_ambiguous(stack: Stack):
    from common.errors import TransientError
    from common.settings import ServiceSettings
    from common.testing.stack import free_port
    from dispatcher.adapters.accounts import TwilioAccounts
    from dispatcher.adapters.http import HttpClient
    from dispatcher.adapters.twilio import TwilioNotifier
    from dispatcher.handlers import attempt_send

    closed = f"http://127.0.0.1:{free_port()}"
    command = stack.command("+31611110010")
    claim = await stack.claims.claim(command)
    async with HttpClient(closed) as http:
        notifier = TwilioNotifier(
            http,
            TwilioAccounts(ServiceSettings(), stack.notifier._accounts._credentials),
        )
        with pytest.raises(TransientError):
            await attempt_send(
                command, claim, claims=stack.claims, notifier=notifier, max_attempts=3
            )
    row = await stack.claim_state(command.idempotency_key)
    assert row["state"] == "released"
    assert (await stack.claims.claim(command)).outcome == "claimed"


async def test_a_crash_before_the_http_call_is_sent_exactly_once_after_the_deadline(
    stack: Stack,
):
    to = "+31611110011"
    command = stack.command(to)
    await stack.trail.requested(command)
    assert (await stack.claims.claim(command)).outcome == "claimed"  # ... and the sender died
    assert await stack.claims.unsettled(limit=10) == []  # not before the stale period
    results = await eventually(
        lambda: resolve(stack), until=lambda r: r == ["resent"], timeout=10, what="resolved"
    )
    assert results == ["resent"]
    assert len(await stack.posts(to)) == 1
    row = await stack.claim_state(command.idempotency_key)
    assert (row["state"], row["attempts"]) == ("sent", 2)
    # the command redelivered after the crash finds the claim sent
    await stack.send(command)
    await eventually(lambda: stack.depth("dispatcher.sends"), until=lambda n: n == 0)
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "sent",
        what="trail sent",
    )
    assert entry["provider_id"] == row["provider_id"]
    assert len(await stack.posts(to)) == 1


async def test_an_ambiguous_send_that_twilio_has_gets_its_sid_and_is_not_resent(stack: Stack):
    to = "+31611110012"
    await stack.sim.inject(kind="timeout", to=to, seconds=3)  # created, answer held back
    command = stack.command(to)
    await stack.send(command)
    await eventually(
        lambda: stack.claim_state(command.idempotency_key),
        until=lambda r: r is not None and r["state"] == "ambiguous",
        what="ambiguous",
    )
    (created,) = await stack.sim.messages(to=to)
    results = await eventually(
        lambda: resolve(stack), until=lambda r: r == ["sent"], timeout=10, what="resolved"
    )
    assert results == ["sent"]
    row = await stack.claim_state(command.idempotency_key)
    assert (row["state"], row["provider_id"]) == ("sent", created["sid"])
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "sent",
        what="trail sent",
    )
    assert entry["provider_id"] == created["sid"]
    assert [a["outcome"] for a in entry["attempts"]] == ["ambiguous", "sent"]
    assert len(await stack.posts(to)) == 1


async def test_an_ambiguous_send_that_twilio_never_got_is_sent_exactly_once(stack: Stack):
    to = "+31611110013"
    command = stack.command(to)
    await stack.trail.requested(command)
    await stack.claims.claim(command)
    # the connection dropped after the request was written, and Twilio never processed it
    ambiguous = NotificationAmbiguous(
        notification_id=command.notification_id, attempt=1, error="ReadError"
    )
    await stack.claims.settle(command.idempotency_key, "ambiguous", ambiguous)
    registry = make_registry()
    metrics = DispatchMetrics.create(registry)
    results = await eventually(
        lambda: resolve_due(
            claims=stack.claims,
            notifier=stack.notifier,
            max_attempts=stack.max_attempts,
            metrics=metrics,
        ),
        until=lambda r: r == ["resent"],
        timeout=10,
        what="resolved",
    )
    assert results == ["resent"]
    assert metrics.resolutions.labels(outcome="resent")._value.get() == 1
    assert await resolve(stack) == []
    assert len(await stack.posts(to)) == 1
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "sent",
        what="trail sent",
    )
    assert [a["outcome"] for a in entry["attempts"]] == ["ambiguous", "sent"]
    assert entry["attempts"][1]["attempt"] == 2


# --- statuses that never came ------------------------------------------------------------


async def test_a_sent_notification_whose_callbacks_were_lost_gets_its_status_fetched(
    stack: Stack,
):
    to = "+31611110014"
    command = stack.command(to)
    await stack.send(command)  # the simulator's callbacks go to an address nobody serves
    await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["state"] == "sent",
        what="sent",
    )
    await eventually(
        lambda: stack.sim.messages(to=to),
        until=lambda m: m and m[0]["status"] == "delivered",
        what="delivered at Twilio",
    )
    assert (await stack.notification(command.notification_id))["delivery_status"] is None
    checks = await due_checks(stack.pool, after_seconds=0, max_checks=3)
    assert [c.notification_id for c in checks] == [command.notification_id]
    for check in checks:
        await stack.publisher.publish(check)
    entry = await eventually(
        lambda: stack.notification(command.notification_id),
        until=lambda n: n["delivery_status"] == "delivered",
        what="fetched status recorded",
    )
    assert [e["status"] for e in entry["status_history"]] == ["delivered"]
    fetches = await stack.sim.requests(f"Messages/{entry['provider_id']}.json", method="GET")
    assert len(fetches) == 1
    assert await due_checks(stack.pool, after_seconds=0, max_checks=3) == []
