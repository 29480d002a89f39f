"""Request/reply over RabbitMQ with direct reply-to (``amq.rabbitmq.reply-to``).

The caller publishes on ``mlc.rpc`` with ``reply_to`` set and waits, with a short timeout, for
the reply whose ``correlation_id`` matches. No reply queue is declared: the broker routes the
reply straight to the calling channel. A timeout or an ``RpcError`` reply of kind
``unavailable`` is a ``TransientError``, so the consumer loop retries the work later.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from pydantic import BaseModel

from common import topology
from common.amqp import Publisher, decode
from common.contracts.base import Message
from common.contracts.tokens import RpcError
from common.errors import MlcError, PermanentError, TransientError

__all__ = ["RpcClient", "serve_rpc"]

log = structlog.get_logger("common.rpc")

_DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
R = TypeVar("R", bound=BaseModel)


class RpcClient:
    """Calls token-keeper. One instance per process; safe for concurrent calls."""

    def __init__(self, channel: AbstractChannel, *, timeout: float = 5.0) -> None:
        self._channel = channel
        self._timeout = timeout
        self._pending: dict[str, asyncio.Future[AbstractIncomingMessage]] = {}

    @classmethod
    async def open(cls, connection: AbstractRobustConnection, *, timeout: float = 5.0) -> RpcClient:
        channel = await connection.channel()
        client = cls(channel, timeout=timeout)
        queue = await channel.get_queue(_DIRECT_REPLY_TO, ensure=False)
        await queue.consume(client._on_reply, no_ack=True)
        return client

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
            exchange = await self._channel.get_exchange(topology.RPC, ensure=False)
            await exchange.publish(
                aio_pika.Message(
                    body=request.model_dump_json().encode(),
                    content_type="application/json",
                    correlation_id=correlation_id,
                    reply_to=_DIRECT_REPLY_TO,
                    type=request.key(),
                    expiration=self._timeout,
                ),
                routing_key=request.key(),
            )
            reply = await asyncio.wait_for(future, self._timeout)
        except TimeoutError as exc:
            raise TransientError(f"no reply to {request.key()} within {self._timeout}s") from exc
        finally:
            self._pending.pop(correlation_id, None)
        if reply.type == RpcError.routing_key:
            error = decode(RpcError, reply.body)
            if error.kind in ("unavailable", "needs_reconnect"):
                # A connection waiting for a new consent keeps its work queued, not failed.
                raise TransientError(f"{request.key()}: {error.message}")
            raise PermanentError(f"{request.key()}: {error.message}", code=error.kind)
        result: R = decode(reply_model, reply.body)
        return result


async def serve_rpc(
    channel: AbstractChannel,
    handlers: dict[str, tuple[type[BaseModel], Callable[[Any], Awaitable[Message]]]],
    publisher: Publisher,
) -> None:
    """Answer RPCs on ``token-keeper.rpc``: routing key (AMQP ``type``) -> (model, handler)."""
    queue = await channel.get_queue(topology.QUEUES["token-keeper.rpc"].name, ensure=False)

    async def on_request(message: AbstractIncomingMessage) -> None:
        async with message.process(requeue=False):
            route = handlers.get(message.type or "")
            try:
                if route is None:
                    raise PermanentError(f"unknown RPC {message.type!r}")
                model, handler = route
                reply: Message = await handler(decode(model, message.body))
            except MlcError as exc:
                kind = (
                    "unavailable" if isinstance(exc, TransientError) else str(exc.code or "error")
                )
                reply = RpcError(kind=kind, message=str(exc))
                log.warning("rpc_failed", rpc=message.type, error_class=exc.error_class)
            if message.reply_to:
                # Not mandatory: a caller that gave up has no reply queue any more.
                await publisher.publish(
                    reply,
                    exchange="",
                    routing_key=message.reply_to,
                    correlation_id=message.correlation_id,
                    mandatory=False,
                )

    await queue.consume(on_request)
