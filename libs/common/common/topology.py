"""Every exchange, queue and routing-key name of the broker, and their idempotent declaration.

Only this module spells out these strings. Each work queue ``<service>.<purpose>`` comes with
delay queues ``<queue>.retry.<tier>`` that dead-letter back into it after their TTL, and a
parking queue ``<queue>.dlq``::

    publisher ──▶ exchange ──binding──▶ work queue ──consumer──┬─ ack
                                           ▲                  ├─ retry ─▶ <queue>.retry.30s ─TTL─┐
                                           └──────────────────┼──────────────────────────────────┘
                                                              └─ dead letter ─▶ <queue>.dlq
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import aio_pika

__all__ = [
    "COMMANDS",
    "EVENTS",
    "QUEUES",
    "RETRY_TIERS",
    "RPC",
    "QueueSpec",
    "declare",
    "definitions",
    "dlq_name",
    "retry_queue_name",
    "tier_label",
]

#: Facts that happened (topic exchange).
EVENTS = "mlc.events"
#: Requests for work (topic exchange).
COMMANDS = "mlc.commands"
#: RPC requests to token-keeper (direct exchange); replies use direct reply-to.
RPC = "mlc.rpc"

#: Retry delays in seconds. RabbitMQ refuses to redeclare a queue with another TTL, so a new
#: delay means a new queue name (the tier label is part of it).
RETRY_TIERS: tuple[int, ...] = (5, 30, 300, 1800)

#: Deliveries of one message before a quorum queue dead-letters it as poison (a consumer that
#: crashes before it can settle). Well above the retry tiers, which republish rather than requeue.
DELIVERY_LIMIT = 10


#: Typed ``x-arguments``: a misspelt key fails the type check instead of the broker.
QueueArguments = TypedDict(
    "QueueArguments",
    {
        "x-queue-type": Literal["quorum", "classic"],
        "x-delivery-limit": int,
        "x-message-ttl": int,
        "x-dead-letter-exchange": str,
        "x-dead-letter-routing-key": str,
    },
    total=False,
)


def tier_label(seconds: int) -> str:
    """``5`` -> ``5s``, ``300`` -> ``5m``, ``1800`` -> ``30m``."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def retry_queue_name(queue: str, seconds: int) -> str:
    """The delay queue that returns a message to ``queue`` after ``seconds``."""
    return f"{queue}.retry.{tier_label(seconds)}"


def dlq_name(queue: str) -> str:
    """The parking queue of ``queue``."""
    return f"{queue}.dlq"


@dataclass(frozen=True)
class QueueSpec:
    """A work queue, what it is bound to, and whether it gets retry tiers and a DLQ."""

    name: str
    bindings: tuple[tuple[str, str], ...]
    retries: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


#: Every work queue of the system, named ``<service>.<purpose>``.
QUEUES: dict[str, QueueSpec] = {
    "enricher.exact-events": QueueSpec("enricher.exact-events", ((EVENTS, "exact.#"),)),
    "dispatcher.sends": QueueSpec(
        "dispatcher.sends",
        # An operator's release of a failed claim travels the same queue as the sends it
        # unblocks; status checks need the same Twilio accounts as the sends.
        (
            (COMMANDS, "notification.send.*"),
            (COMMANDS, "notification.release"),
            (COMMANDS, "notification.check-status"),
        ),
    ),
    "dispatcher.suppressions": QueueSpec(
        "dispatcher.suppressions",
        # What feeds the suppression list: STOP/START replies, SMS that could not be delivered
        # (30004-30006), SendGrid bounces, unsubscribes and spam reports; ``processed`` settles
        # an email whose send had no answer.
        (
            (EVENTS, "twilio.inbound.stop"),
            (EVENTS, "twilio.inbound.start"),
            (EVENTS, "twilio.status.undelivered"),
            (EVENTS, "twilio.status.failed"),
            (EVENTS, "email.event.processed"),
            (EVENTS, "email.event.bounce"),
            (EVENTS, "email.event.dropped"),
            (EVENTS, "email.event.spamreport"),
            (EVENTS, "email.event.unsubscribe"),
            (EVENTS, "email.event.group_unsubscribe"),
            (EVENTS, "email.event.group_resubscribe"),
            # an erasure request: the recipients kept in claims are forgotten
            (EVENTS, "privacy.forget"),
        ),
    ),
    "enricher.suppressions": QueueSpec(
        "enricher.suppressions",
        # A suppressed address ends the reminder chains that would have gone to it.
        ((EVENTS, "suppression.added"), (EVENTS, "privacy.forget")),
    ),
    "auditor.events": QueueSpec(
        "auditor.events",
        (
            (COMMANDS, "notification.send.*"),
            (EVENTS, "notification.*"),
            (EVENTS, "twilio.status.*"),
            (EVENTS, "twilio.inbound.*"),
            (EVENTS, "email.event.*"),
            (EVENTS, "suppression.*"),
            (EVENTS, "privacy.forget"),
        ),
    ),
    "token-keeper.rpc": QueueSpec(
        "token-keeper.rpc",
        (
            (RPC, "token.get"),
            (RPC, "token.refresh"),
            (RPC, "webhook-secret.get"),
            (RPC, "channel-credentials.get"),
        ),
        retries=False,
    ),
}


def _work_arguments(name: str) -> QueueArguments:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dlq_name(name),
    }


def _retry_arguments(name: str, seconds: int) -> QueueArguments:
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": seconds * 1000,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": name,
    }


def _queue_plan(spec: QueueSpec) -> list[tuple[str, QueueArguments]]:
    """(name, arguments) of the work queue and its derived queues, in declaration order."""
    if not spec.retries:
        return [(spec.name, QueueArguments({"x-queue-type": "quorum"}))]
    plan = [(dlq_name(spec.name), QueueArguments({"x-queue-type": "quorum"}))]
    plan += [(retry_queue_name(spec.name, t), _retry_arguments(spec.name, t)) for t in RETRY_TIERS]
    plan.append((spec.name, _work_arguments(spec.name)))
    return plan


async def declare(channel: aio_pika.abc.AbstractChannel, *queues: str) -> None:
    """Declare the exchanges and the named queues (all when none is named). Idempotent."""
    for name, kind in ((EVENTS, "topic"), (COMMANDS, "topic"), (RPC, "direct")):
        await channel.declare_exchange(name, kind, durable=True)
    for spec in (QUEUES[q] for q in queues) if queues else QUEUES.values():
        for name, arguments in _queue_plan(spec):
            declared = await channel.declare_queue(name, durable=True, arguments=dict(arguments))  # type: ignore[arg-type]
        # Bound on the declared (robust) queue, so a broker that lost its definitions gets the
        # bindings back when the channel is restored; the work queue is declared last.
        queue = declared
        for exchange, key in spec.bindings:
            await queue.bind(exchange, routing_key=key)


def definitions(vhost: str = "/") -> dict[str, Any]:
    """The topology as a RabbitMQ definitions document (``rabbitmqctl import_definitions``)."""
    exchanges = [
        {
            "name": n,
            "vhost": vhost,
            "type": t,
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        }
        for n, t in ((EVENTS, "topic"), (COMMANDS, "topic"), (RPC, "direct"))
    ]
    queues, bindings = [], []
    for spec in QUEUES.values():
        for name, arguments in _queue_plan(spec):
            queues.append(
                {
                    "name": name,
                    "vhost": vhost,
                    "durable": True,
                    "auto_delete": False,
                    "arguments": arguments,
                }
            )
        for exchange, key in spec.bindings:
            bindings.append(
                {
                    "source": exchange,
                    "vhost": vhost,
                    "destination": spec.name,
                    "destination_type": "queue",
                    "routing_key": key,
                    "arguments": {},
                }
            )
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": exchanges,
        "queues": queues,
        "bindings": bindings,
    }


if __name__ == "__main__":  # pragma: no cover - `python -m common.topology > definitions.json`
    print(json.dumps(definitions(), indent=2))
