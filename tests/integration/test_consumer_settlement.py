"""run_consumer's outcomes on the real broker: ack, retry tier, dead letter, invalid."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from common import topology
from common.amqp import Publisher, run_consumer
from common.contracts import NotificationFailed, NotificationSent
from common.errors import PermanentError, TransientError
from common.metrics import ConsumerMetrics, make_registry
from common.testing import eventually

pytestmark = pytest.mark.integration

QUEUE = "dispatcher.sends"


@pytest.fixture
def connection(dispatcher_sends: AbstractRobustConnection) -> AbstractRobustConnection:
    return dispatcher_sends  # QUEUE, its tiers and dead letters empty (conftest)


async def depth(connection: AbstractRobustConnection, queue: str) -> int:
    channel = await connection.channel()
    declared = await channel.declare_queue(queue, passive=True)
    await channel.close()
    return declared.declaration_result.message_count or 0


def sent() -> NotificationSent:
    return NotificationSent(notification_id=uuid4(), attempt=1, provider_id="SM" + "0" * 32)


async def consume_with(connection: AbstractRobustConnection, handler) -> ConsumerMetrics:  # type: ignore[no-untyped-def]
    metrics = ConsumerMetrics.create(make_registry())
    channel = await connection.channel()
    publisher = await Publisher.open(connection)
    await run_consumer(
        channel, QUEUE, {"": (NotificationSent, handler)}, publisher=publisher, metrics=metrics
    )
    return metrics


async def publish_raw(connection: AbstractRobustConnection, body: bytes) -> None:
    channel = await connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(aio_pika.Message(body), routing_key=QUEUE)
    await channel.close()


async def test_transient_errors_go_to_the_first_retry_tier_with_the_attempt_counted(connection):
    seen: list[int] = []

    async def handler(message: NotificationSent):
        seen.append(message.attempt)
        raise TransientError("twilio answered 500")

    await consume_with(connection, handler)
    await publish_raw(connection, sent().model_dump_json().encode())
    retry = topology.retry_queue_name(QUEUE, topology.RETRY_TIERS[0])
    await eventually(lambda: depth(connection, retry), until=lambda n: n == 1, what="retry depth")
    channel = await connection.channel()
    parked = await (await channel.get_queue(retry)).get(timeout=5)
    assert parked.headers["x-attempt"] == 2
    await parked.reject(requeue=True)
    assert await depth(connection, topology.dlq_name(QUEUE)) == 0


async def test_retried_messages_come_back_after_the_tier_delay_and_succeed(connection):
    calls = 0
    done = asyncio.Event()

    async def handler(message: NotificationSent):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientError("once")
        done.set()
        return []

    metrics = await consume_with(connection, handler)
    await publish_raw(connection, sent().model_dump_json().encode())
    await asyncio.wait_for(done.wait(), timeout=topology.RETRY_TIERS[0] + 15)
    assert calls == 2
    assert metrics.messages.labels(queue=QUEUE, outcome="retry")._value.get() == 1
    await eventually(
        lambda: metrics.messages.labels(queue=QUEUE, outcome="ack")._value.get(),
        until=lambda v: v == 1,
        what="ack counted",
    )
    assert await depth(connection, QUEUE) == 0


async def test_permanent_errors_are_dead_lettered_with_their_class_and_no_retry(connection):
    async def handler(message: NotificationSent):
        raise PermanentError("Twilio 21211: invalid number +31612345678", code=21211)

    await consume_with(connection, handler)
    await publish_raw(connection, sent().model_dump_json().encode())
    dlq = topology.dlq_name(QUEUE)
    await eventually(lambda: depth(connection, dlq), until=lambda n: n == 1, what="dlq depth")
    channel = await connection.channel()
    parked = await (await channel.get_queue(dlq)).get(timeout=5)
    assert parked.headers["x-error-class"] == "permanent"
    assert parked.headers["x-error-code"] == "21211"
    assert "+31612345678" not in parked.headers["x-error"]  # masked
    await parked.ack()
    for tier in topology.RETRY_TIERS:
        assert await depth(connection, topology.retry_queue_name(QUEUE, tier)) == 0


async def test_messages_that_failed_to_decode_are_dead_lettered_as_invalid(connection):
    calls = 0

    async def handler(message: NotificationSent):
        nonlocal calls
        calls += 1

    await consume_with(connection, handler)
    await publish_raw(connection, b'{"not": "a notification"')
    dlq = topology.dlq_name(QUEUE)
    await eventually(lambda: depth(connection, dlq), until=lambda n: n == 1, what="dlq depth")
    channel = await connection.channel()
    parked = await (await channel.get_queue(dlq)).get(timeout=5)
    assert parked.headers["x-error-class"] == "invalid"
    await parked.ack()
    assert calls == 0


async def test_outputs_are_published_before_the_delivery_is_acked(connection):
    channel = await connection.channel()
    sink = await channel.declare_queue(exclusive=True)
    await sink.bind(topology.EVENTS, routing_key="notification.sent")
    received: list[bytes] = []

    async def handler(message: NotificationSent):
        return [message]

    await consume_with(connection, handler)
    original = sent()
    await publish_raw(connection, original.model_dump_json().encode())

    async def drain() -> int:
        msg = await sink.get(fail=False, timeout=1)
        if msg:
            received.append(msg.body)
            await msg.ack()
        return len(received)

    await eventually(drain, until=lambda n: n == 1, what="output published")
    assert NotificationSent.model_validate_json(received[0]) == original


async def publish_at_attempt(connection: AbstractRobustConnection, body: bytes, attempt: int):
    channel = await connection.channel(publisher_confirms=True)
    message = aio_pika.Message(body, headers={"x-attempt": attempt})
    await channel.default_exchange.publish(message, routing_key=QUEUE)
    await channel.close()


def failed_fact(message: NotificationSent) -> NotificationFailed:
    return NotificationFailed(
        notification_id=message.notification_id,
        attempt=message.attempt,
        error_class="exhausted",
        error_code="20429",
        error="Twilio answered 429 until the retries ran out",
    )


async def test_a_transient_error_publishes_its_facts_only_when_its_retries_are_used_up(
    connection,
):
    channel = await connection.channel()
    sink = await channel.declare_queue(exclusive=True)
    await sink.bind(topology.EVENTS, routing_key="notification.failed")

    async def handler(message: NotificationSent):
        raise TransientError("Twilio 429", code=20429, facts=[failed_fact(message)])

    await consume_with(connection, handler)
    early, last = sent(), sent()
    await publish_at_attempt(connection, early.model_dump_json().encode(), 1)
    await publish_at_attempt(
        connection, last.model_dump_json().encode(), len(topology.RETRY_TIERS) + 1
    )
    dlq = topology.dlq_name(QUEUE)
    await eventually(lambda: depth(connection, dlq), until=lambda n: n == 1, what="dlq depth")
    retry = topology.retry_queue_name(QUEUE, topology.RETRY_TIERS[0])
    await eventually(lambda: depth(connection, retry), until=lambda n: n == 1, what="retried")
    facts = []
    while msg := await sink.get(fail=False, timeout=1):
        facts.append(NotificationFailed.model_validate_json(msg.body))
        await msg.ack()
    assert [f.notification_id for f in facts] == [last.notification_id]
    assert facts[0].error_class == "exhausted"
    parked = await (await channel.get_queue(dlq)).get(timeout=5)
    assert parked.headers["x-error-class"] == "transient"
    await parked.ack()
    await (await channel.get_queue(retry)).purge()


async def test_a_parked_message_moved_back_to_its_queue_starts_a_fresh_retry_ladder(connection):
    """What `mlc dlq replay` and the management UI's "Move messages" both do: the copy keeps
    its x-error-class and its exhausted x-attempt, yet gets its retries again."""

    async def handler(message: NotificationSent):
        raise TransientError("Twilio still answers 503")

    await consume_with(connection, handler)
    channel = await connection.channel(publisher_confirms=True)
    moved = aio_pika.Message(
        sent().model_dump_json().encode(),
        headers={
            "x-attempt": len(topology.RETRY_TIERS) + 1,
            "x-error-class": "transient",
            "x-error": "TransientError: Twilio answered 503",
        },
    )
    await channel.default_exchange.publish(moved, routing_key=QUEUE)
    retry = topology.retry_queue_name(QUEUE, topology.RETRY_TIERS[0])
    await eventually(lambda: depth(connection, retry), until=lambda n: n == 1, what="retried")
    parked = await (await channel.get_queue(retry)).get(timeout=5)
    assert parked.headers["x-attempt"] == 2
    assert "x-error-class" not in parked.headers
    assert "x-error" not in parked.headers
    await parked.ack()
    assert await depth(connection, topology.dlq_name(QUEUE)) == 0
