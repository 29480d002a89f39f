"""Consumers come back by themselves after the broker goes away: a cut connection (through a
loopback proxy in front of the shared broker) and a restart of a private RabbitMQ node.

A consumer that is not attached must also show in readiness (``Consumer.check``), and turn
ready again on its own.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import aio_pika
import pytest
import pytest_asyncio

from common import amqp, health, topology
from common.contracts import NotificationSent, WebhookSecret, WebhookSecretGet
from common.errors import MlcError
from common.metrics import ConsumerMetrics, make_registry
from common.rpc import RpcClient, serve_rpc
from common.testing import eventually
from common.testing.proxy import TcpProxy
from common.testing.rabbit import PrivateRabbit

pytestmark = pytest.mark.integration

QUEUE = "dispatcher.sends"


def via(url: str, port: int) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@pytest_asyncio.fixture
async def proxy(private_amqp_url: str) -> AsyncIterator[TcpProxy]:
    parts = urllib.parse.urlsplit(private_amqp_url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672).start()
    yield proxy
    await proxy.stop()


def notification() -> NotificationSent:
    return NotificationSent(notification_id=uuid4(), attempt=1, provider_id="SM" + "0" * 32)


async def publish(url: str, count: int) -> list[NotificationSent]:
    """Publish ``count`` messages to the work queue over a connection of their own."""
    messages = [notification() for _ in range(count)]
    async with amqp.connect(url, name="test-broker-recovery-publisher") as connection:
        publisher = await amqp.Publisher.open(connection)
        for message in messages:
            await publisher.publish(message, exchange="", routing_key=QUEUE)
    return messages


async def start_consumer(
    connection: aio_pika.abc.AbstractRobustConnection, seen: list[NotificationSent]
) -> amqp.Consumer:
    async def handler(message: NotificationSent) -> None:
        seen.append(message)

    channel = await connection.channel()
    await topology.declare(channel, QUEUE)
    return await amqp.run_consumer(
        channel,
        QUEUE,
        {"notification.": (NotificationSent, handler)},
        publisher=await amqp.Publisher.open(connection),
        metrics=ConsumerMetrics.create(make_registry()),
    )


async def ready(check: health.Check) -> bool:
    try:
        await asyncio.wait_for(check(), timeout=2)
    except Exception:
        return False
    return True


async def test_a_consumer_resumes_after_its_broker_connection_is_cut(private_amqp_url, proxy):
    seen: list[NotificationSent] = []
    async with amqp.connect(
        via(private_amqp_url, proxy.port), name="test-cut-consumer", reconnect_interval=0.5
    ) as connection:
        consumer = await start_consumer(connection, seen)
        broker = health.broker_check(connection)
        before = await publish(private_amqp_url, 1)
        await eventually(lambda: len(seen), until=lambda n: n == 1, what="first delivery")
        assert await ready(consumer.check)
        assert await ready(broker)

        proxy.cut()
        await eventually(lambda: ready(broker), until=lambda ok: not ok, what="broker not ready")
        assert not await ready(consumer.check)
        during = await publish(private_amqp_url, 5)  # queued while the consumer is away
        await asyncio.sleep(2)
        assert len(seen) == 1
        proxy.restore()

        await eventually(lambda: len(seen), until=lambda n: n == 6, what="deliveries after cut")
        assert {m.notification_id for m in seen} == {m.notification_id for m in before + during}
        await eventually(lambda: ready(consumer.check), what="consumer ready again")
        assert await ready(broker)


async def test_rpc_is_served_and_answered_again_after_the_connection_is_cut(
    private_amqp_url, proxy
):
    async def secret(request: WebhookSecretGet) -> WebhookSecret:
        return WebhookSecret(connection_id=request.connection_id, client_id="c", secret="s3cret")

    url = via(private_amqp_url, proxy.port)
    async with (
        amqp.connect(url, name="test-cut-rpc-server", reconnect_interval=0.5) as server,
        amqp.connect(url, name="test-cut-rpc-client", reconnect_interval=0.5) as client,
    ):
        channel = await server.channel()
        await topology.declare(channel, "token-keeper.rpc")
        serving = await serve_rpc(
            channel,
            {WebhookSecretGet.routing_key: (WebhookSecretGet, secret)},
            await amqp.Publisher.open(server),
            allowed={WebhookSecretGet.routing_key: {amqp.login(client)}},
        )
        rpc = await RpcClient.open(client, timeout=1)
        answer = await rpc.call(WebhookSecretGet(connection_id="a"), WebhookSecret)
        assert answer.connection_id == "a"

        await proxy.cut_for(1.5)

        async def call() -> str | None:
            try:
                reply = await rpc.call(WebhookSecretGet(connection_id="b"), WebhookSecret)
            except MlcError:
                return None
            return reply.connection_id

        assert await eventually(call, what="RPC answered after the cut") == "b"
        await eventually(lambda: ready(serving.check), what="RPC server ready again")
        await eventually(lambda: ready(rpc.check), what="RPC client ready again")


async def test_draining_stops_new_deliveries_and_waits_for_the_one_in_flight(private_amqp_url):
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[NotificationSent] = []

    async def slow(message: NotificationSent) -> None:
        started.set()
        await release.wait()
        finished.append(message)

    async with amqp.connect(private_amqp_url, name="test-drain") as connection:
        channel = await connection.channel()
        await topology.declare(channel, QUEUE)
        consumer = await amqp.run_consumer(
            channel,
            QUEUE,
            {"notification.": (NotificationSent, slow)},
            publisher=await amqp.Publisher.open(connection),
            metrics=ConsumerMetrics.create(make_registry()),
            prefetch=1,
        )
        await publish(private_amqp_url, 3)
        await asyncio.wait_for(started.wait(), timeout=10)
        drain = asyncio.create_task(consumer.drain(grace=10))
        await asyncio.sleep(0.5)
        assert not drain.done(), "drain returned while a delivery was in flight"
        assert not await ready(consumer.check), "a draining consumer reported ready"
        release.set()
        assert await asyncio.wait_for(drain, timeout=10) == 0
        await asyncio.sleep(0.5)
        assert len(finished) == 1, "a delivery was taken after the drain began"
        probe = await connection.channel()
        left = await probe.declare_queue(QUEUE, passive=True)
        assert left.declaration_result.message_count == 2


# --- a private node that is really stopped and started ----------------------------------


@pytest.fixture(scope="module")
def rabbit() -> Iterator[PrivateRabbit]:
    if not PrivateRabbit.available():
        raise pytest.UsageError(
            "broker restart tests need rabbitmq-server (install the rabbitmq-server package)"
        )
    node = PrivateRabbit().start()
    yield node
    node.cleanup()


async def test_a_consumer_resumes_after_the_broker_restarts(rabbit: PrivateRabbit):
    seen: list[NotificationSent] = []
    async with amqp.connect(rabbit.url, name="test-restart", reconnect_interval=0.5) as connection:
        consumer = await start_consumer(connection, seen)
        await publish(rabbit.url, 1)
        await eventually(lambda: len(seen), until=lambda n: n == 1, what="first delivery")

        await asyncio.to_thread(rabbit.restart)
        await publish(rabbit.url, 3)
        await eventually(
            lambda: len(seen), until=lambda n: n == 4, timeout=60, what="deliveries after restart"
        )
        await eventually(lambda: ready(consumer.check), what="consumer ready again")


async def test_topology_is_declared_again_when_the_broker_comes_back_empty(
    rabbit: PrivateRabbit,
):
    """A node that lost its definitions (a new volume, say) gets exchanges, queues and
    bindings back from the consumers' channels: a command published to the exchange is
    consumed."""
    seen: list[NotificationSent] = []
    async with amqp.connect(
        rabbit.url, name="test-empty-restart", reconnect_interval=0.5
    ) as connection:
        consumer = await start_consumer(connection, seen)
        await asyncio.to_thread(rabbit.stop)
        shutil.rmtree(rabbit.dir / "mnesia")
        await asyncio.to_thread(rabbit.start)
        await eventually(lambda: ready(consumer.check), timeout=60, what="consumer ready again")

        async with amqp.connect(rabbit.url, name="test-empty-restart-publisher") as other:
            publisher = await amqp.Publisher.open(other)
            message = notification()
            # Through the exchange and the restored binding, not straight to the queue.
            await publisher.publish(
                message, exchange=topology.COMMANDS, routing_key="notification.send.sms"
            )
        await eventually(lambda: len(seen), until=lambda n: n == 1, what="routed delivery")
        assert seen[0].notification_id == message.notification_id


async def test_deliveries_stuck_unacked_on_the_channel_are_recovered_by_the_watchdog(
    private_amqp_url,
):
    """Deliveries the client lost (held unacked on the consumer's channel, handled by nobody)
    go back to the queue and are handled, once the consumer has been idle for a while."""
    seen: list[NotificationSent] = []

    async def handler(message: NotificationSent) -> None:
        seen.append(message)

    async with amqp.connect(private_amqp_url, name="test-stall") as connection:
        channel = await connection.channel()
        await topology.declare(channel, QUEUE)
        await channel.set_qos(prefetch_count=3)
        queue = await channel.declare_queue(QUEUE, passive=True, robust=False)
        # A consumer that takes three deliveries and loses them (as a client that received
        # them before its consumer was in place would), then goes away without a requeue.
        taken: list[object] = []

        async def lose(message: object) -> None:
            taken.append(message)

        lost = await queue.consume(lose)
        sent = await publish(private_amqp_url, 3)
        await eventually(lambda: len(taken), until=lambda n: n == 3, what="deliveries lost")
        await queue.cancel(lost)
        probe = await connection.channel()
        held = await probe.declare_queue(QUEUE, passive=True, robust=False)
        assert held.declaration_result.message_count == 0  # unacked: not ready, not handled
        await amqp.run_consumer(
            channel,
            QUEUE,
            {"notification.": (NotificationSent, handler)},
            publisher=await amqp.Publisher.open(connection),
            metrics=ConsumerMetrics.create(make_registry()),
            prefetch=3,
            stall_check=1.0,
        )
        await eventually(lambda: len(seen), until=lambda n: n == 3, what="recovered deliveries")
        assert {m.notification_id for m in seen} == {m.notification_id for m in sent}


def test_a_private_node_whose_port_was_taken_meanwhile_starts_on_another():
    """Its ports are picked free and bound later: a process that takes one in between (another
    node, a simulator on a free port) must not fail the run that wanted a broker."""
    if not PrivateRabbit.available():
        raise pytest.UsageError("needs rabbitmq-server (install the rabbitmq-server package)")
    node = PrivateRabbit()
    taken = node.port

    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        try:
            node.start()
            assert node.port != taken
            assert asyncio.run(_answers_amqp(node.url))
        finally:
            node.cleanup()


async def _answers_amqp(url: str) -> bool:
    connection = await aio_pika.connect(url)
    await connection.close()
    return True
