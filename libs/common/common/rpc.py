"""Request/reply over RabbitMQ with direct reply-to (``amq.rabbitmq.reply-to``).

The caller publishes on ``mlc.rpc`` with ``reply_to`` set and waits, with a short timeout, for
the reply whose ``correlation_id`` matches. No reply queue is declared: the broker routes the
reply straight to the calling channel. A timeout or an ``RpcError`` reply of kind
``unavailable`` is a ``TransientError``, so the consumer loop retries the work later.

Who may ask: a request carries ``user_id`` (the caller's AMQP login, validated by the broker),
and ``serve_rpc`` answers each routing key only to the users its table allows; anyone else
gets ``RpcError(kind="forbidden")`` (a ``PermanentError`` for the caller), a ``security_event``
warning and ``mlc_security_events_total{kind="rpc_forbidden"}``.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Generic, TypeVar

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from prometheus_client import Counter
from pydantic import BaseModel

from common import topology
from common.amqp import Consumer, Publisher, consumer_attached, decode, login
from common.contracts.base import Message
from common.contracts.tokens import RpcError
from common.errors import MlcError, PermanentError, TransientError

__all__ = ["CachedLookup", "RpcAuthorization", "RpcClient", "RpcRoutes", "rpc_route", "serve_rpc"]

log = structlog.get_logger("common.rpc")

_DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
R = TypeVar("R", bound=BaseModel)

#: RPC routing key -> the AMQP users allowed to ask it. A key missing from it is asked by nobody.
RpcAuthorization = Mapping[str, Collection[str]]

#: RPC routing key -> (request model, handler answering it).
RpcRoutes = dict[str, tuple[type[BaseModel], Callable[[Any], Awaitable[Message]]]]


def rpc_route(
    model: type[R], handler: Callable[[R], Awaitable[Message]]
) -> tuple[type[BaseModel], Callable[[Any], Awaitable[Message]]]:
    """One entry of ``RpcRoutes``, checked: ``handler`` (its ports bound with
    ``functools.partial``, checked by name) answers what ``model`` decodes to."""
    return model, handler


class RpcClient:
    """Calls token-keeper. One instance per process; safe for concurrent calls."""

    def __init__(self, connection: AbstractRobustConnection, *, timeout: float = 5.0) -> None:
        self._connection = connection
        self._channel: AbstractChannel | None = None
        self._opening = asyncio.Lock()
        self._timeout = timeout
        self._pending: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}
        self._reply_tag: str | None = None
        #: token-keeper decides by it whom to answer; the broker checks it is ours
        self._user_id = login(connection)

    @classmethod
    async def open(cls, connection: AbstractRobustConnection, *, timeout: float = 5.0) -> RpcClient:
        client = cls(connection, timeout=timeout)
        await client._ready_channel()
        return client

    async def _ready_channel(self) -> AbstractChannel:
        """The channel that publishes requests and consumes replies, (re)opened when needed.

        The reply pseudo-queue is declared (passively) on the robust channel, so aio-pika
        re-attaches the reply consumer when it restores the channel after a connection loss.
        A channel this client closed itself (after a channel error, e.g. publishing before
        token-keeper declared ``mlc.rpc``) is replaced by a fresh one here.
        """
        async with self._opening:
            if self._channel is None or self._channel.is_closed:
                channel = await self._connection.channel()
                await channel.declare_exchange(topology.RPC, "direct", durable=True)
                queue = await channel.declare_queue(_DIRECT_REPLY_TO, passive=True)
                self._reply_tag = await queue.consume(self._on_reply, no_ack=True)
                self._channel = channel
            return self._channel

    async def check(self) -> None:
        """Raise unless replies can reach this client right now (a readiness check)."""
        if self._channel is None or not await consumer_attached(self._channel, self._reply_tag):
            raise ConnectionError("RPC reply consumer not attached")

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self._pending.pop(message.correlation_id or "", None)
        if future is not None and not future.done():
            future.set_result(message)

    async def call(self, request: Message, reply_model: type[R]) -> R:
        """Send ``request`` and return the validated reply. Raises typed errors on failure."""
        correlation_id = str(uuid.uuid4())
        future: asyncio.Future[AbstractIncomingMessage] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            # One deadline for everything: opening the channel and publishing wait for a
            # reconnecting broker too, and a caller (holding a lock, say) must not wait forever.
            async with asyncio.timeout(self._timeout):
                reply = await self._send(request, correlation_id, future)
        except TimeoutError as exc:
            raise TransientError(f"no reply to {request.key()} within {self._timeout}s") from exc
        except (aio_pika.exceptions.AMQPError, RuntimeError) as exc:
            # ChannelInvalidStateError is a RuntimeError: the channel closed under us.
            if self._channel is not None and not self._channel.is_closed:
                await self._channel.close()
            raise TransientError(f"{request.key()} not sent: {type(exc).__name__}") from exc
        finally:
            self._pending.pop(correlation_id, None)
        if reply.type == RpcError.routing_key:
            error = decode(RpcError, reply.body)
            if error.kind == "needs_reconnect":
                # A connection waiting for a new consent keeps its work queued, not failed.
                raise TransientError(
                    f"{request.key()}: {error.message}", code=error.kind, indefinite=True
                )
            if error.kind == "unavailable":
                raise TransientError(
                    f"{request.key()}: {error.message}", retry_after=error.retry_after
                )
            raise PermanentError(f"{request.key()}: {error.message}", code=error.kind)
        result: R = decode(reply_model, reply.body)
        return result

    async def _send(
        self,
        request: Message,
        correlation_id: str,
        future: asyncio.Future[AbstractIncomingMessage],
    ) -> AbstractIncomingMessage:
        channel = await self._ready_channel()
        exchange = await channel.get_exchange(topology.RPC, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                body=request.model_dump_json().encode(),
                content_type="application/json",
                correlation_id=correlation_id,
                reply_to=_DIRECT_REPLY_TO,
                type=request.key(),
                expiration=self._timeout,
                user_id=self._user_id,
            ),
            routing_key=request.key(),
        )
        return await future


class CachedLookup(Generic[R]):
    """Per-connection answers of one RPC (a webhook secret, channel credentials), kept for
    ``ttl`` seconds so a burst of webhooks or sends asks token-keeper once. A refusal
    (PermanentError: an unknown connection) is kept for ``negative_ttl`` seconds, so a flood of
    requests for made-up connections costs one RPC each, not one per request."""

    #: Most refusals remembered; beyond it the oldest are forgotten (a flood of random ids).
    NEGATIVE_CAPACITY = 10_000

    def __init__(
        self,
        rpc: RpcClient,
        request: Callable[[str], Message],
        reply: type[R],
        *,
        ttl: float,
        negative_ttl: float = 0.0,
    ) -> None:
        self._rpc, self._request, self._reply, self._ttl = rpc, request, reply, ttl
        self._negative_ttl = negative_ttl
        self._cache: dict[str, tuple[float, R]] = {}
        self._refused: dict[str, tuple[float, PermanentError]] = {}

    async def get(self, connection_id: str) -> R:
        """The connection's answer. Raises PermanentError (unknown) or TransientError."""
        now = time.monotonic()
        hit = self._cache.get(connection_id)
        if hit and hit[0] > now:
            return hit[1]
        refused = self._refused.get(connection_id)
        if refused and refused[0] > now:
            raise refused[1]
        try:
            answer = await self._rpc.call(self._request(connection_id), self._reply)
        except PermanentError as exc:
            if self._negative_ttl > 0:
                if len(self._refused) >= self.NEGATIVE_CAPACITY:
                    self._refused.pop(next(iter(self._refused)))
                self._refused[connection_id] = (now + self._negative_ttl, exc)
            raise
        self._refused.pop(connection_id, None)
        self._cache[connection_id] = (time.monotonic() + self._ttl, answer)
        return answer


def _forbidden(message: AbstractIncomingMessage, security_events: Counter | None) -> RpcError:
    """The refusal of a request from a user the table does not allow: logged and counted, as
    a probe for secrets it may well be."""
    log.warning("security_event", kind="rpc_forbidden", rpc=message.type, amqp_user=message.user_id)
    if security_events is not None:
        security_events.labels(kind="rpc_forbidden").inc()
    return RpcError(kind="forbidden", message=f"{message.type!r} is not answered to this caller")


async def _answer(
    message: AbstractIncomingMessage,
    handlers: dict[str, tuple[type[BaseModel], Callable[[Any], Awaitable[Message]]]],
) -> Message:
    """The handler's reply to an allowed request, or the RpcError its failure maps to."""
    route = handlers.get(message.type or "")
    try:
        if route is None:
            raise PermanentError(f"unknown RPC {message.type!r}")
        model, handler = route
        return await handler(decode(model, message.body))
    except MlcError as exc:
        transient = isinstance(exc, TransientError)
        if exc.code == "needs_reconnect":
            kind = "needs_reconnect"
        else:
            kind = "unavailable" if transient else str(exc.code or "error")
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        log.warning("rpc_failed", rpc=message.type, error_class=exc.error_class)
        return RpcError(kind=kind, message=str(exc), retry_after=retry_after)


async def serve_rpc(
    channel: AbstractChannel,
    handlers: RpcRoutes,
    publisher: Publisher,
    *,
    allowed: RpcAuthorization,
    security_events: Counter | None = None,
) -> Consumer:
    """Answer RPCs on ``token-keeper.rpc``: routing key (AMQP ``type``) -> (model, handler),
    each only to the AMQP users ``allowed`` names for it (by the request's broker-validated
    ``user_id``; a request without one is refused too). There is no "allow everyone": a test
    that serves RPCs allows its own user.

    Declared on the robust ``channel``, so the consumer comes back after a reconnect."""
    queue = await channel.declare_queue(topology.QUEUES["token-keeper.rpc"].name, passive=True)
    consumer = Consumer(channel, queue)
    table = {key: frozenset(users) for key, users in allowed.items()}

    async def on_request(message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=False):
            if message.user_id and message.user_id in table.get(message.type or "", ()):
                reply = await _answer(message, handlers)
            else:
                reply = _forbidden(message, security_events)
            if message.reply_to:
                # Not mandatory: a caller that gave up has no reply queue any more.
                await publisher.publish(
                    reply,
                    exchange="",
                    routing_key=message.reply_to,
                    correlation_id=message.correlation_id,
                    mandatory=False,
                )

    consumer.tag = await queue.consume(functools.partial(consumer.wrap, on_request))
    return consumer
