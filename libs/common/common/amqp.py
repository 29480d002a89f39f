"""RabbitMQ plumbing: named robust connections, a confirming publisher, and ``run_consumer``,
the one place that settles deliveries.

Outcome of one delivery in ``run_consumer``::

    decode ─ fails ─────────────────────────────────────▶ .dlq  (x-error-class: invalid)
      │
    handler ─ returns messages ─▶ publish all, confirmed ─▶ ack
      ├─ PermanentError / AmbiguousOutcome ─────────────▶ .dlq
      └─ TransientError / anything else ─▶ next retry tier (x-attempt + 1), or .dlq when used up
                                             (publishing the error's facts first)

The original is acked only after the republish or the outputs are confirmed, so a crash at any
point leaves the message in a queue (at-least-once); handlers are idempotent.

Surviving the broker: every queue a consumer reads is declared on its (robust) channel, never
fetched with ``get_queue(..., ensure=False)``, so aio-pika re-declares it and re-attaches the
consumer after a connection or channel loss and after a broker restart. ``Consumer.check`` tells
readiness whether the consumer really is attached right now; ``Consumer.drain`` stops it on
SIGTERM and lets in-flight deliveries finish.

Who sent a message: every message published here carries AMQP ``user_id`` = the login of the
publishing connection. RabbitMQ refuses (``PRECONDITION_FAILED``) a publish whose ``user_id``
differs from the connection's user, so a consumer can trust it (token-keeper answers a secret
only to the service that needs it, see ``common.rpc.serve_rpc``).
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.connection import make_url
from pydantic import BaseModel, ValidationError

from common import batches, topology
from common.backoff import next_tier
from common.contracts.base import SCHEMA_VERSION, Message
from common.errors import AmbiguousOutcome, InvalidMessage, PermanentError, TransientError
from common.logging import mask_text
from common.metrics import ConsumerMetrics
from common.runtime import address, wait_for_dependency

__all__ = [
    "Consumer",
    "Handler",
    "Publisher",
    "Routes",
    "broker_connected",
    "connect",
    "consumer_attached",
    "decode",
    "login",
    "route",
    "run_consumer",
]

log = structlog.get_logger("common.amqp")

#: A handler gets the validated message and returns the messages to publish (may be empty).
Handler = Callable[[Any], Awaitable[Sequence[Message] | None]]

#: What a queue's consumer reacts to: message type (the routing key, or a prefix ending in ".")
#: -> (model, handler). Each service builds its own in handlers.py (``routes``), with ``route``.
Routes = Mapping[str, tuple[type[BaseModel], Handler]]


M = TypeVar("M", bound=BaseModel)


def route(
    model: type[M], handler: Callable[[M], Awaitable[Sequence[Message] | None]]
) -> tuple[type[BaseModel], Handler]:
    """One entry of a ``Routes`` map, checked: ``handler`` (its ports bound with
    ``functools.partial``, which the type checker checks by name) takes what ``model``
    decodes to."""
    return model, handler


#: Headers a parked message carries; a retried copy drops them (their presence means "replayed").
_ERROR_HEADERS = ("x-error-class", "x-error", "x-error-code")

#: Longest ``x-error`` header value; the full error goes to the log line.
_ERROR_HEADER_LIMIT = 500


#: Seconds between reconnection attempts after the broker went away.
RECONNECT_INTERVAL = 2.0


async def _connect_robust(
    url: str, name: str, reconnect_interval: float
) -> AbstractRobustConnection:
    """``aio_pika.connect_robust``, but a connection that could not connect is closed here:
    left to aio-pika's ``__del__``, its close would be scheduled on a loop that may be gone."""
    connection = aio_pika.RobustConnection(
        make_url(url, reconnect_interval=reconnect_interval),
        client_properties={"connection_name": name},
        reconnect_interval=reconnect_interval,
    )
    try:
        await connection.connect()
    except BaseException:
        await connection.close()
        raise
    return connection


@asynccontextmanager
async def connect(
    url: str, *, name: str, reconnect_interval: float = RECONNECT_INTERVAL
) -> AsyncIterator[AbstractRobustConnection]:
    """A robust connection named after the service (visible in the management UI)."""
    connection = await wait_for_dependency(
        "broker",
        where=address(url),
        attempt=functools.partial(_connect_robust, url, name, reconnect_interval),
        # A broker that closes the socket mid-handshake (it is restarting) makes aiormq raise
        # StopAsyncIteration from its frame reader: the same "not yet" as a refused connect.
        retry_on=(
            OSError,
            ConnectionError,
            TimeoutError,
            StopAsyncIteration,
            aio_pika.exceptions.AMQPConnectionError,
        ),
    )
    try:
        yield connection
    finally:
        await connection.close()


def login(connection: aio_pika.abc.AbstractConnection) -> str:
    """The user ``connection`` logged in as: the URL's user, or aio-pika's default ``guest``.

    Set as ``user_id`` on what the connection publishes, which the broker checks against the
    authenticated user (a login by client certificate, with no user in the URL, would need
    the certificate's name here)."""
    url = getattr(connection, "url", None)
    return (url.user if url is not None else None) or "guest"


def broker_connected(connection: AbstractRobustConnection) -> bool:
    """True while the connection's transport is up (False while a robust one reconnects)."""
    transport = connection.transport
    return not connection.is_closed and transport is not None and not transport.connection.is_closed


async def consumer_attached(channel: AbstractChannel, tag: str | None) -> bool:
    """True when ``tag`` consumes on ``channel`` right now, as the broker last confirmed.

    ``is_closed`` follows the live (underlay) channel, which dies with the connection; a tag
    is in the underlay's consumers only between consume-ok and a cancel.
    """
    if tag is None or channel.is_closed:
        return False
    underlay = await channel.get_underlay_channel()
    return not underlay.is_closed and tag in getattr(underlay, "consumers", {})


class Consumer:
    """One consumer on one queue: whether it is attached, and stopping it gracefully."""

    def __init__(self, channel: AbstractChannel, queue: aio_pika.abc.AbstractQueue) -> None:
        self.channel = channel
        self.queue = queue
        self.tag: str | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False
        self._last_delivery = time.monotonic()
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.queue.name

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def check(self) -> None:
        """Raise unless the broker has this consumer attached right now (a readiness check)."""
        if self._draining:
            raise ConnectionError(f"consumer of {self.name} is draining")
        if not await consumer_attached(self.channel, self.tag):
            raise ConnectionError(f"consumer of {self.name} is not attached")

    async def wrap(
        self,
        deliver: Callable[[AbstractIncomingMessage], Awaitable[None]],
        incoming: AbstractIncomingMessage,
    ) -> None:
        """Run ``deliver`` counting it in flight (so ``drain`` can wait for it)."""
        self._last_delivery = time.monotonic()
        self._in_flight += 1
        self._idle.clear()
        try:
            await deliver(incoming)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    def watch(self, interval: float) -> None:
        """Start the stall watchdog (see ``_watch``)."""
        self._watchdog = asyncio.get_running_loop().create_task(
            self._watch(interval), name=f"stall-watchdog:{self.name}"
        )

    async def _watch(self, interval: float) -> None:
        """Recover deliveries the client lost.

        When the connection drops while the channel is being restored, deliveries can reach
        the restored channel before its consumer is in place: the broker counts them as
        unacked, the client never handles them, and with the prefetch window full nothing
        else is delivered (seen in chaos runs: 16 unacked, nothing in flight, the queue
        growing). When nothing has been delivered for ``interval`` seconds and nothing is in
        flight, ``basic.recover`` (requeue) hands any such deliveries back to the queue; with
        nothing unacked it changes nothing.
        """
        while not self._draining:
            await asyncio.sleep(interval)
            idle = time.monotonic() - self._last_delivery >= interval
            if self._draining or self._in_flight or not idle:
                continue
            try:
                if not await consumer_attached(self.channel, self.tag):
                    continue
                underlay = await self.channel.get_underlay_channel()
                await asyncio.wait_for(underlay.basic_recover(requeue=True), timeout=10)
            except Exception as exc:  # the channel may be restoring: look again next time
                log.info("stall_check_skipped", queue=self.name, error=type(exc).__name__)

    async def drain(self, grace: float) -> int:
        """Stop taking deliveries, wait up to ``grace`` seconds for the ones in flight.

        Returns how many were still in flight when the grace ran out; their deliveries are
        unacked and go back to the queue when the channel closes.
        """
        self._draining = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.tag is not None and not self.channel.is_closed:
            try:
                await asyncio.wait_for(self.queue.cancel(self.tag), timeout=min(grace, 5))
            except Exception as exc:  # the broker may be gone already: nothing to cancel
                log.warning("consumer_cancel_failed", queue=self.name, error=type(exc).__name__)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=grace)
        except TimeoutError:
            log.warning("drain_timed_out", queue=self.name, in_flight=self._in_flight)
        return self._in_flight


class Delivered(Protocol):
    """What settling and republishing read of a delivered message: an aio-pika incoming
    message, or one member of a delivered batch."""

    @property
    def body(self) -> bytes: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def message_id(self) -> str | None: ...
    @property
    def correlation_id(self) -> str | None: ...
    @property
    def type(self) -> str | None: ...
    @property
    def timestamp(self) -> datetime | None: ...
    @property
    def headers(self) -> Mapping[str, Any]: ...


#: Most messages one batch carries (``Publisher``'s default; ``MLC_PUBLISH_BATCH_MAX``).
MAX_BATCH = 100

#: What the messages of one batch share: exchange, routing key, type, mandatory.
_Group = tuple[str, str, str, bool]
_Queued = list[tuple[batches.Member, asyncio.Future[None]]]


class Publisher:
    """Publishes models persistently, with publisher confirms and ``mandatory``.

    ``publish`` returns only after the broker confirmed; an unroutable or nacked message raises
    (``aio_pika.exceptions.DeliveryError``), so callers never believe in a lost message. Every
    message, republished copies included, carries ``user_id`` (the connection's login), which
    the broker validates.

    Messages to one exchange with one routing key and type that are published while an
    earlier publish waits for its confirm go out together as one batch (``common.batches``,
    ADR 0010), up to ``max_batch`` a message: a lone message waits for nobody and goes out as
    itself, and each caller returns once the message holding its own is confirmed. Messages
    to the default exchange (a queue by name: retry tiers, dead letters, RPC replies), with a
    ``reply_to`` or with headers of their own always go alone; ``max_batch=1`` sends every
    message alone.
    """

    def __init__(
        self, channel: AbstractChannel, *, user_id: str, max_batch: int = MAX_BATCH
    ) -> None:
        self._channel = channel
        self.user_id = user_id
        self._max_batch = max(1, max_batch)
        self._queued: dict[_Group, _Queued] = {}
        self._runner: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, connection: AbstractRobustConnection, *, max_batch: int = MAX_BATCH
    ) -> Publisher:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        return cls(channel, user_id=login(connection), max_batch=max_batch)

    async def publish(
        self,
        message: Message,
        *,
        correlation_id: str | None = None,
        routing_key: str | None = None,
        exchange: str | None = None,
        headers: dict[str, Any] | None = None,
        reply_to: str | None = None,
        mandatory: bool = True,
        message_id: str | None = None,
    ) -> None:
        """Publish ``message`` and wait for the broker's confirm. ``message_id``: the
        message's own ``message_id()``, when the caller has it already (it is a uuid5 of the
        message's identity: computing it once per message is enough)."""
        group = (
            message.exchange if exchange is None else exchange,
            routing_key or message.key(),
            message.message_type(),
            mandatory,
        )
        member = batches.Member(
            message.model_dump_json().encode(), message_id or message.message_id(), correlation_id
        )
        if self._max_batch == 1 or not group[0] or reply_to is not None or headers:
            await self._send(group, [member], headers=headers, reply_to=reply_to)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.setdefault(group, []).append((member, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(
                self._drain(), name="publisher-batches"
            )
        await future  # a caller that goes away cancels its own future only

    async def _drain(self) -> None:
        """Publish what is queued, a batch per group, until nothing is."""
        while self._queued:
            queued, self._queued = self._queued, {}
            rounds = [
                (group, members[i : i + self._max_batch])
                for group, members in queued.items()
                for i in range(0, len(members), self._max_batch)
            ]
            try:
                await asyncio.gather(*(self._settle(group, part) for group, part in rounds))
            except BaseException:  # cancelled (shutdown): no caller is left waiting
                stopped = ConnectionError("publishing stopped")
                for part in [part for _, part in rounds] + list(self._queued.values()):
                    _fail(part, stopped)
                self._queued = {}
                raise

    async def _settle(self, group: _Group, part: _Queued) -> None:
        try:
            await self._send(group, [member for member, _ in part])
        except Exception as exc:  # not confirmed: every message in it failed
            _fail(part, exc)
            return
        for _, future in part:
            if not future.done():
                future.set_result(None)

    async def _send(
        self,
        group: _Group,
        members: Sequence[batches.Member],
        *,
        headers: dict[str, Any] | None = None,
        reply_to: str | None = None,
    ) -> None:
        exchange, routing_key, message_type, mandatory = group
        alone = len(members) == 1
        amqp_message = aio_pika.Message(
            body=members[0].body if alone else batches.encode(members),
            content_type="application/json" if alone else batches.CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            # a batch's own id only names it (``mlc dlq replay --id``)
            message_id=members[0].message_id if alone else uuid.uuid4().hex,
            correlation_id=members[0].correlation_id if alone else None,
            type=message_type,
            timestamp=datetime.now(UTC),
            reply_to=reply_to,
            user_id=self.user_id,
            headers={
                "x-schema-version": SCHEMA_VERSION,
                **(headers or {}),
                **({} if alone else {batches.BATCH_HEADER: len(members)}),
            },
        )
        target = await self._exchange(exchange)
        await target.publish(amqp_message, routing_key=routing_key, mandatory=mandatory)

    async def republish(
        self,
        incoming: Delivered,
        queue: str,
        headers: dict[str, Any],
        *,
        drop: tuple[str, ...] = (),
    ) -> None:
        """Send a copy of ``incoming`` to ``queue`` (a retry tier or a DLQ), confirmed, with
        ``headers`` set and the ``drop`` headers removed."""
        kept = {k: v for k, v in (incoming.headers or {}).items() if k not in drop}
        copy = aio_pika.Message(
            body=incoming.body,
            content_type=incoming.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=incoming.message_id,
            correlation_id=incoming.correlation_id,
            type=incoming.type,
            timestamp=incoming.timestamp,
            # the copy is ours: the broker refuses another user's id on our connection
            user_id=self.user_id,
            headers={**kept, **headers},
        )
        await self._channel.default_exchange.publish(copy, routing_key=queue, mandatory=True)

    async def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        if name == "":
            return self._channel.default_exchange
        return await self._channel.get_exchange(name, ensure=False)


def _fail(part: _Queued, exc: BaseException) -> None:
    for _, future in part:
        if not future.done():
            future.set_exception(exc)


def decode(model: type[BaseModel], body: bytes) -> Any:
    """Validate ``body`` against ``model``; any failure is an ``InvalidMessage``."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidMessage(f"{model.__name__}: {exc.error_count()} validation error(s)") from exc


def _route(routes: Routes, message_type: str | None) -> tuple[type[BaseModel], Handler]:
    kind = message_type or ""
    if kind in routes:
        return routes[kind]
    for prefix, route in routes.items():
        if prefix.endswith(".") and kind.startswith(prefix):
            return route
    raise InvalidMessage(f"no handler for message type {kind!r}")


@dataclass(frozen=True, slots=True)
class _BatchMember:
    """One member of a delivered batch, with the properties it shares with the batch."""

    body: bytes
    message_id: str | None
    correlation_id: str | None
    type: str | None
    timestamp: datetime | None
    headers: Mapping[str, Any]
    content_type: str | None = "application/json"


def _members(incoming: AbstractIncomingMessage) -> list[Delivered]:
    """The messages ``incoming`` carries: itself, or the members of its batch (which raises
    ``InvalidMessage`` when the batch does not decode)."""
    headers = incoming.headers or {}
    if batches.BATCH_HEADER not in headers:
        return [incoming]
    shared = {k: v for k, v in headers.items() if k != batches.BATCH_HEADER}
    return [
        _BatchMember(
            m.body, m.message_id, m.correlation_id, incoming.type, incoming.timestamp, shared
        )
        for m in batches.decode(incoming.body)
    ]


async def run_consumer(
    channel: AbstractChannel,
    queue: str,
    routes: Routes,
    *,
    publisher: Publisher,
    metrics: ConsumerMetrics,
    prefetch: int = 16,
    stall_check: float = 30.0,
) -> Consumer:
    """Consume ``queue`` with ``routes`` and settle every delivery.

    A batch (``common.batches``) is settled member by member, each as if it had come alone
    (its own retry tier or dead letter), and acked once every member is settled. At most
    ``prefetch`` messages are handled at once, whether they came alone or in batches.

    The queue is declared (passively) on ``channel`` so that aio-pika restores the consumer
    after a reconnect; the returned ``Consumer`` reports on it and drains it.
    """
    await channel.set_qos(prefetch_count=prefetch)
    amqp_queue = await channel.declare_queue(queue, passive=True)
    consumer = Consumer(channel, amqp_queue)
    handling = asyncio.Semaphore(prefetch)

    async def settle(delivered: Delivered, attempt: int) -> None:
        async with handling:
            structlog.contextvars.bind_contextvars(
                queue=queue,
                message_id=delivered.message_id,
                correlation_id=delivered.correlation_id,
                attempt=attempt,
            )
            started = time.perf_counter()
            try:
                outcome = await _settle(delivered, queue, routes, publisher, attempt)
            finally:
                structlog.contextvars.unbind_contextvars(
                    "queue", "message_id", "correlation_id", "attempt"
                )
        metrics.messages.labels(queue=queue, outcome=outcome).inc()
        metrics.handle_seconds.labels(queue=queue).observe(time.perf_counter() - started)

    async def on_message(incoming: AbstractIncomingMessage) -> None:
        headers = incoming.headers or {}
        # A parked message moved back to its queue (``mlc dlq replay`` or the management UI's
        # "Move messages") still carries its error headers: it starts a fresh retry ladder.
        replayed = "x-error-class" in headers
        attempt = 1 if replayed else int(headers.get("x-attempt", 1))  # type: ignore[arg-type]
        if replayed:
            log.info("message_replayed", queue=queue, previous_error=headers.get("x-error-class"))
        try:
            members = _members(incoming)
        except InvalidMessage as exc:
            await _dead_letter(incoming, queue, publisher, exc)
            await incoming.ack()
            metrics.messages.labels(queue=queue, outcome="dead_letter").inc()
            return
        if len(members) == 1:
            await settle(members[0], attempt)
        else:
            await asyncio.gather(*(settle(member, attempt) for member in members))
        await incoming.ack()

    consumer.tag = await amqp_queue.consume(functools.partial(consumer.wrap, on_message))
    if stall_check > 0:
        consumer.watch(stall_check)
    return consumer


async def _settle(
    incoming: Delivered,
    queue: str,
    routes: Routes,
    publisher: Publisher,
    attempt: int,
) -> str:
    """Handle one message and publish its outputs, or send it to its retry tier or dead
    letter queue (all confirmed); returns the outcome. The caller acks the delivery."""
    try:
        model, handler = _route(routes, incoming.type)
        message = decode(model, incoming.body)
        outputs = await handler(message) or ()
        await _publish_all(publisher, outputs, incoming.correlation_id)
    except (PermanentError, AmbiguousOutcome) as exc:
        # Facts the handler attached (e.g. NotificationFailed) go out before the parking.
        await _publish_all(publisher, exc.facts, incoming.correlation_id)
        await _dead_letter(incoming, queue, publisher, exc)
        return "dead_letter"
    except Exception as exc:  # the one broad catch: every failure ends in a retry or the DLQ
        transient = exc if isinstance(exc, TransientError) else None
        tier = next_tier(
            attempt,
            transient.retry_after if transient else None,
            indefinite=bool(transient and transient.indefinite),
        )
        if tier is None:
            # Retries used up: the facts a transient error carries for this case (e.g. a
            # NotificationFailed with reason "exhausted") go out before the parking.
            await _publish_all(publisher, getattr(exc, "facts", ()), incoming.correlation_id)
            await _dead_letter(incoming, queue, publisher, exc)
            return "dead_letter"
        await publisher.republish(
            incoming,
            topology.retry_queue_name(queue, tier),
            {"x-attempt": attempt + 1},
            drop=_ERROR_HEADERS,
        )
        log.warning(
            "message_retried",
            error_class=_error_class(exc),
            retry_in=tier,
            error=mask_text(str(exc)),
        )
        return "retry"
    return "ack"


async def _publish_all(
    publisher: Publisher, messages: Sequence[Message], correlation_id: str | None
) -> None:
    """Publish ``messages`` together (so they can share a batch), all confirmed."""
    if len(messages) == 1:
        await publisher.publish(messages[0], correlation_id=correlation_id)
    elif messages:
        await asyncio.gather(
            *(publisher.publish(m, correlation_id=correlation_id) for m in messages)
        )


def _error_class(exc: BaseException) -> str:
    return getattr(exc, "error_class", "unexpected")


async def _dead_letter(
    incoming: Delivered, queue: str, publisher: Publisher, exc: BaseException
) -> None:
    error = mask_text(f"{type(exc).__name__}: {exc}")[:_ERROR_HEADER_LIMIT]
    headers: dict[str, Any] = {"x-error-class": _error_class(exc), "x-error": error}
    code = getattr(exc, "code", None)
    if code is not None:
        headers["x-error-code"] = str(code)
    await publisher.republish(incoming, topology.dlq_name(queue), headers)
    log.error(
        "message_dead_lettered", error_class=headers["x-error-class"], error=error, exc_info=exc
    )
