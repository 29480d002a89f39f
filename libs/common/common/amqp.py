"""RabbitMQ plumbing: named robust connections, a confirming publisher, and ``run_consumer``,
the one place that settles deliveries.

Outcome of one delivery in ``run_consumer``::

    decode ─ fails ─────────────────────────────────────▶ .dlq  (x-error-class: invalid)
      │
    handler ─ returns messages ─▶ publish all, confirmed ─▶ ack
      ├─ PermanentError / AmbiguousOutcome ─────────────▶ .dlq
      └─ TransientError / anything else ─▶ next retry tier (x-attempt + 1), or .dlq when used up

The original is acked only after the republish or the outputs are confirmed, so a crash at any
point leaves the message in a queue (at-least-once); handlers are idempotent.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from pydantic import BaseModel, ValidationError

from common import topology
from common.backoff import next_tier
from common.contracts.base import SCHEMA_VERSION, Message
from common.errors import AmbiguousOutcome, InvalidMessage, PermanentError, TransientError
from common.logging import mask_text
from common.metrics import ConsumerMetrics

__all__ = ["Handler", "Publisher", "Routes", "bind", "connect", "decode", "run_consumer"]

log = structlog.get_logger("common.amqp")

#: A handler gets the validated message and returns the messages to publish (may be empty).
Handler = Callable[[Any], Awaitable[Sequence[Message] | None]]

#: What a queue's consumer reacts to: message type (the routing key, or a prefix ending in ".")
#: -> (model, handler). The map at the bottom of each service's handlers.py.
Routes = Mapping[str, tuple[type[BaseModel], Handler]]


def bind(routes: Routes, **ports: Any) -> Routes:
    """The same routes with every handler given ``ports`` (for services whose handlers all take
    the same ports; handlers with different ports are bound one by one in app.py)."""
    return {
        key: (model, functools.partial(handler, **ports))
        for key, (model, handler) in routes.items()
    }


#: Longest ``x-error`` header value; the full error goes to the log line.
_ERROR_HEADER_LIMIT = 500


@asynccontextmanager
async def connect(url: str, *, name: str) -> AsyncIterator[AbstractRobustConnection]:
    """A robust connection named after the service (visible in the management UI)."""
    connection = await aio_pika.connect_robust(url, client_properties={"connection_name": name})
    try:
        yield connection
    finally:
        await connection.close()


class Publisher:
    """Publishes models persistently, with publisher confirms and ``mandatory``.

    ``publish`` returns only after the broker confirmed; an unroutable or nacked message raises
    (``aio_pika.exceptions.DeliveryError``), so callers never believe in a lost message.
    """

    def __init__(self, channel: AbstractChannel) -> None:
        self._channel = channel

    @classmethod
    async def open(cls, connection: AbstractRobustConnection) -> Publisher:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        return cls(channel)

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
    ) -> None:
        key = routing_key or message.key()
        amqp_message = aio_pika.Message(
            body=message.model_dump_json().encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id(),
            correlation_id=correlation_id,
            type=message.key(),
            timestamp=datetime.now(UTC),
            reply_to=reply_to,
            headers={"x-schema-version": SCHEMA_VERSION, **(headers or {})},
        )
        target = await self._exchange(message.exchange if exchange is None else exchange)
        await target.publish(amqp_message, routing_key=key, mandatory=mandatory)

    async def republish(
        self, incoming: AbstractIncomingMessage, queue: str, headers: dict[str, Any]
    ) -> None:
        """Send a copy of ``incoming`` to ``queue`` (a retry tier or a DLQ), confirmed."""
        copy = aio_pika.Message(
            body=incoming.body,
            content_type=incoming.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=incoming.message_id,
            correlation_id=incoming.correlation_id,
            type=incoming.type,
            timestamp=incoming.timestamp,
            headers={**(incoming.headers or {}), **headers},
        )
        await self._channel.default_exchange.publish(copy, routing_key=queue, mandatory=True)

    async def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        if name == "":
            return self._channel.default_exchange
        return await self._channel.get_exchange(name, ensure=False)


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


async def run_consumer(
    channel: AbstractChannel,
    queue: str,
    routes: Routes,
    *,
    publisher: Publisher,
    metrics: ConsumerMetrics,
    prefetch: int = 16,
) -> str:
    """Consume ``queue`` with ``handler`` and settle every delivery. Returns the consumer tag."""
    await channel.set_qos(prefetch_count=prefetch)
    amqp_queue = await channel.get_queue(queue, ensure=False)

    async def on_message(incoming: AbstractIncomingMessage) -> None:
        attempt = int((incoming.headers or {}).get("x-attempt", 1))  # type: ignore[arg-type]
        structlog.contextvars.bind_contextvars(
            queue=queue,
            message_id=incoming.message_id,
            correlation_id=incoming.correlation_id,
            attempt=attempt,
        )
        started = time.perf_counter()
        try:
            outcome = await _settle(incoming, queue, routes, publisher, attempt)
        finally:
            structlog.contextvars.unbind_contextvars(
                "queue", "message_id", "correlation_id", "attempt"
            )
        metrics.messages.labels(queue=queue, outcome=outcome).inc()
        metrics.handle_seconds.labels(queue=queue).observe(time.perf_counter() - started)

    return await amqp_queue.consume(on_message)


async def _settle(
    incoming: AbstractIncomingMessage,
    queue: str,
    routes: Routes,
    publisher: Publisher,
    attempt: int,
) -> str:
    try:
        model, handler = _route(routes, incoming.type)
        message = decode(model, incoming.body)
        outputs = await handler(message) or ()
        for output in outputs:
            await publisher.publish(output, correlation_id=incoming.correlation_id)
    except (PermanentError, AmbiguousOutcome) as exc:
        # Facts the handler attached (e.g. NotificationFailed) go out before the parking.
        for fact in exc.facts:
            await publisher.publish(fact, correlation_id=incoming.correlation_id)
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
            await _dead_letter(incoming, queue, publisher, exc)
            return "dead_letter"
        await publisher.republish(
            incoming, topology.retry_queue_name(queue, tier), {"x-attempt": attempt + 1}
        )
        await incoming.ack()
        log.warning(
            "message_retried",
            error_class=_error_class(exc),
            retry_in=tier,
            error=mask_text(str(exc)),
        )
        return "retry"
    await incoming.ack()
    return "ack"


def _error_class(exc: BaseException) -> str:
    return getattr(exc, "error_class", "unexpected")


async def _dead_letter(
    incoming: AbstractIncomingMessage, queue: str, publisher: Publisher, exc: BaseException
) -> None:
    error = mask_text(f"{type(exc).__name__}: {exc}")[:_ERROR_HEADER_LIMIT]
    headers: dict[str, Any] = {"x-error-class": _error_class(exc), "x-error": error}
    code = getattr(exc, "code", None)
    if code is not None:
        headers["x-error-code"] = str(code)
    await publisher.republish(incoming, topology.dlq_name(queue), headers)
    await incoming.ack()
    log.error(
        "message_dead_lettered", error_class=headers["x-error-class"], error=error, exc_info=exc
    )
