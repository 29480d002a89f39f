"""Batches on the real broker (ADR 0010): what ``Publisher`` puts together, and how
``run_consumer`` settles each member of a batch as if it had come alone."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import aio_pika
import pytest
from aio_pika.abc import AbstractQueue, AbstractRobustConnection

from common import batches, topology
from common.amqp import Publisher, run_consumer
from common.contracts import NotificationSent
from common.errors import PermanentError, TransientError
from common.metrics import ConsumerMetrics, make_registry
from common.testing import eventually

pytestmark = pytest.mark.integration

QUEUE = "dispatcher.sends"


@pytest.fixture
def connection(dispatcher_sends: AbstractRobustConnection) -> AbstractRobustConnection:
    return dispatcher_sends  # QUEUE, its tiers and dead letters empty (conftest)


def sent() -> NotificationSent:
    return NotificationSent(notification_id=uuid4(), attempt=1, provider_id="SM" + "0" * 32)


async def sink(connection: AbstractRobustConnection, routing_key: str) -> AbstractQueue:
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    await queue.bind(topology.EVENTS, routing_key=routing_key)
    return queue


async def take(queue: AbstractQueue, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    got: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def more() -> int:
        while message := await queue.get(fail=False, timeout=1):
            await message.ack()
            got.append(message)
        return len(got)

    await eventually(more, until=lambda n: n >= count, what=f"{count} message(s)")
    return got


def members_of(messages: list[aio_pika.abc.AbstractIncomingMessage]) -> list[NotificationSent]:
    return [
        NotificationSent.model_validate_json(body)
        for message in messages
        for body in batches.bodies(message.body, message.headers)
    ]


async def test_messages_published_together_travel_as_one_batch_and_a_lone_one_as_itself(
    connection,
):
    queue = await sink(connection, "notification.sent")
    publisher = await Publisher.open(connection)
    lone = sent()
    await publisher.publish(lone, correlation_id="lone")
    together = [sent() for _ in range(5)]
    await asyncio.gather(
        *(publisher.publish(m, correlation_id=f"c{i}") for i, m in enumerate(together))
    )
    first, batch = await take(queue, 2)

    assert batches.BATCH_HEADER not in first.headers
    assert first.content_type == "application/json"
    assert first.correlation_id == "lone"
    assert first.message_id == lone.message_id()
    assert NotificationSent.model_validate_json(first.body) == lone

    assert batch.headers[batches.BATCH_HEADER] == 5
    assert batch.type == "notification.sent"
    assert batch.content_type == batches.CONTENT_TYPE
    carried = batches.decode(batch.body)
    assert [NotificationSent.model_validate_json(m.body) for m in carried] == together
    assert [m.message_id for m in carried] == [m.message_id() for m in together]
    assert [m.correlation_id for m in carried] == [f"c{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("max_batch", "sizes"), [(1, [None] * 7), (3, [3, 3, None])], ids=["alone", "at-most-3"]
)
async def test_no_batch_holds_more_than_max_batch_and_one_sends_every_message_alone(
    connection, max_batch, sizes
):
    queue = await sink(connection, "notification.sent")
    publisher = await Publisher.open(connection, max_batch=max_batch)
    together = [sent() for _ in range(7)]
    await asyncio.gather(*(publisher.publish(m) for m in together))
    got = await take(queue, len(sizes))
    assert sorted(m.headers.get(batches.BATCH_HEADER) or 0 for m in got) == sorted(
        size or 0 for size in sizes
    )
    assert sorted(members_of(got), key=str) == sorted(together, key=str)


async def test_every_caller_of_an_unroutable_batch_is_told_it_was_not_delivered(connection):
    publisher = await Publisher.open(connection)
    results = await asyncio.gather(
        *(publisher.publish(sent(), routing_key="nobody.listens.here") for _ in range(3)),
        return_exceptions=True,
    )
    assert len(results) == 3
    assert all(isinstance(r, aio_pika.exceptions.DeliveryError) for r in results), results


async def publish_batch(
    connection: AbstractRobustConnection, members: list[batches.Member], **headers: object
) -> None:
    channel = await connection.channel(publisher_confirms=True)
    await channel.default_exchange.publish(
        aio_pika.Message(
            batches.encode(members),
            type="notification.sent",
            content_type=batches.CONTENT_TYPE,
            headers={batches.BATCH_HEADER: len(members), **headers},
        ),
        routing_key=QUEUE,
    )
    await channel.close()


def member(message: NotificationSent) -> batches.Member:
    return batches.Member(
        message.model_dump_json().encode(), message.message_id(), str(message.notification_id)
    )


async def consume_with(  # type: ignore[no-untyped-def]
    connection: AbstractRobustConnection, handler, prefetch: int = 16
) -> ConsumerMetrics:
    metrics = ConsumerMetrics.create(make_registry())
    await run_consumer(
        await connection.channel(),
        QUEUE,
        {"notification.sent": (NotificationSent, handler)},
        publisher=await Publisher.open(connection),
        metrics=metrics,
        prefetch=prefetch,
    )
    return metrics


def counted(metrics: ConsumerMetrics, outcome: str) -> float:
    return metrics.messages.labels(queue=QUEUE, outcome=outcome)._value.get()


async def test_each_member_of_a_batch_is_settled_alone_retry_and_dead_letter_included(
    connection,
):
    fine, flaky, broken, also_fine = sent(), sent(), sent(), sent()
    handled: list[NotificationSent] = []

    async def handler(message: NotificationSent):
        handled.append(message)
        if message == flaky:
            raise TransientError("Twilio answered 503")
        if message == broken:
            raise PermanentError("Twilio 21211: invalid number", code=21211)
        return []

    metrics = await consume_with(connection, handler)
    await publish_batch(connection, [member(m) for m in (fine, flaky, broken, also_fine)])
    await eventually(lambda: counted(metrics, "ack"), until=lambda n: n == 2, what="acks")
    channel = await connection.channel()
    retry = await channel.get_queue(topology.retry_queue_name(QUEUE, topology.RETRY_TIERS[0]))
    retried = await retry.get(timeout=5)
    dlq = await channel.get_queue(topology.dlq_name(QUEUE))
    parked = await dlq.get(timeout=5)

    # Each goes on as a plain message of its own: its own body, ids and headers, no batch.
    assert NotificationSent.model_validate_json(retried.body) == flaky
    assert retried.message_id == flaky.message_id()
    assert retried.correlation_id == str(flaky.notification_id)
    assert retried.type == "notification.sent"
    assert retried.headers["x-attempt"] == 2
    assert batches.BATCH_HEADER not in retried.headers
    assert NotificationSent.model_validate_json(parked.body) == broken
    assert parked.headers["x-error-class"] == "permanent"
    assert batches.BATCH_HEADER not in parked.headers
    await retried.ack()
    await parked.ack()

    # Every member was handled once, and the batch itself is gone from the queue.
    assert sorted(map(str, handled)) == sorted(map(str, (fine, flaky, broken, also_fine)))
    assert (counted(metrics, "retry"), counted(metrics, "dead_letter")) == (1, 1)
    declared = await channel.declare_queue(QUEUE, passive=True)
    assert declared.declaration_result.message_count == 0
    assert await retry.get(fail=False, timeout=1) is None
    assert await dlq.get(fail=False, timeout=1) is None


async def test_a_batch_whose_body_does_not_decode_is_dead_lettered_whole_as_invalid(connection):
    calls = 0

    async def handler(message: NotificationSent):
        nonlocal calls
        calls += 1

    await consume_with(connection, handler)
    channel = await connection.channel(publisher_confirms=True)
    body = b'[["a", null], ["b", null]]\n' + sent().model_dump_json().encode()
    await channel.default_exchange.publish(
        aio_pika.Message(body, type="notification.sent", headers={batches.BATCH_HEADER: 2}),
        routing_key=QUEUE,
    )
    dlq = await channel.get_queue(topology.dlq_name(QUEUE))

    async def parked() -> aio_pika.abc.AbstractIncomingMessage | None:
        return await dlq.get(fail=False, timeout=1)

    got = await eventually(parked, until=lambda m: m is not None, what="parked batch")
    assert got.body == body
    assert got.headers["x-error-class"] == "invalid"
    assert got.headers[batches.BATCH_HEADER] == 2  # kept: a replay is a batch again
    await got.ack()
    assert calls == 0


async def test_a_consumer_handles_no_more_than_prefetch_messages_at_once_from_a_batch(
    connection,
):
    running = peak = 0
    handled = 0

    async def handler(message: NotificationSent):
        nonlocal running, peak, handled
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        handled += 1
        return []

    await consume_with(connection, handler, prefetch=2)
    await publish_batch(connection, [member(sent()) for _ in range(6)])
    await eventually(lambda: handled, until=lambda n: n == 6, what="handled")
    assert peak == 2
