"""``mlc dlq list|show|replay <queue> [--all | --id MESSAGE_ID]``: the parked messages of a
work queue (``<queue>.dlq``), and moving them back.

Replaying is always safe: the enricher re-reads Exact, and the dispatcher's claim stops a
second send of a notification that was sent (and a failed one stays failed until
``mlc retry`` releases it). A replayed message starts again at ``x-attempt`` 1 and carries
``x-replayed-from`` and the error headers it was parked with under ``x-replayed-error*``.

Listing reads the messages without settling them: they return to the DLQ, in order, when
the command ends.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from common import amqp, topology
from common.logging import mask_text
from token_keeper.settings import Settings

__all__ = ["add_arguments", "parked", "replay", "run"]

Say = Callable[[str], None]

#: Most messages one command reads from a DLQ.
_LIMIT = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "show", "replay"])
    queues = sorted(q for q, spec in topology.QUEUES.items() if spec.retries)
    parser.add_argument("queue", choices=queues, help="the work queue whose DLQ to read")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="replay: every parked message")
    which.add_argument("--id", dest="message_id", help="only the message with this id")


def _summary(message: AbstractIncomingMessage) -> dict[str, Any]:
    headers = message.headers or {}
    return {
        "message_id": message.message_id,
        "type": message.type,
        "correlation_id": message.correlation_id,
        "timestamp": message.timestamp.isoformat() if message.timestamp else None,
        "attempt": headers.get("x-attempt"),
        # a batch parked whole (it did not decode) holds this many messages
        "members": headers.get("x-batch"),
        "error_class": headers.get("x-error-class"),
        "error_code": headers.get("x-error-code"),
        "error": mask_text(str(headers.get("x-error") or "")) or None,
    }


async def parked(url: str, queue: str) -> list[dict[str, Any]]:
    """Every message in ``queue``'s DLQ (left there), summarised; bodies masked."""
    connection = await aio_pika.connect(url, client_properties={"connection_name": "mlc-dlq"})
    try:
        channel = await connection.channel()
        dlq = await channel.get_queue(topology.dlq_name(queue), ensure=False)
        found = []
        for _ in range(_LIMIT):
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            item = _summary(message)
            item["body"] = mask_text(message.body.decode(errors="replace"))
            found.append(item)
        # closing the channel unsettled returns every message to the DLQ
        await channel.close()
        return found
    finally:
        await connection.close()


async def replay(url: str, queue: str, *, message_id: str | None = None) -> list[str]:
    """Move the DLQ's messages (or the one with ``message_id``) back to ``queue``, each acked
    only after its copy is confirmed. Returns the ids moved."""
    connection = await aio_pika.connect(url, client_properties={"connection_name": "mlc-dlq"})
    moved: list[str] = []
    try:
        channel = await connection.channel(publisher_confirms=True)
        dlq = await channel.get_queue(topology.dlq_name(queue), ensure=False)
        for _ in range(_LIMIT):
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            if message_id is not None and message.message_id != message_id:
                continue  # returned to the DLQ when the channel closes
            headers = dict(message.headers or {})
            replayed = {
                k.replace("x-error", "x-replayed-error"): headers.pop(k)
                for k in list(headers)
                if k.startswith("x-error")
            }
            headers.update(replayed)
            headers["x-attempt"] = 1
            headers["x-replayed-from"] = topology.dlq_name(queue)
            headers["x-replayed-at"] = datetime.now(UTC).isoformat()
            copy = aio_pika.Message(
                body=message.body,
                content_type=message.content_type,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=message.message_id,
                correlation_id=message.correlation_id,
                type=message.type,
                timestamp=message.timestamp,
                # the replayed copy is ours: the broker checks it against our login
                user_id=amqp.login(connection),
                headers=headers,
            )
            await channel.default_exchange.publish(copy, routing_key=queue, mandatory=True)
            await message.ack()
            moved.append(message.message_id or "-")
        await channel.close()
    finally:
        await connection.close()
    return moved


async def run(settings: Settings, args: argparse.Namespace, say: Say) -> int:
    url = str(settings.amqp_url)
    if args.action == "replay":
        if not (args.all or args.message_id):
            say("replay needs --all or --id MESSAGE_ID")
            return 2
        moved = await replay(url, args.queue, message_id=args.message_id)
        say(f"replayed {len(moved)} message(s) to {args.queue}")
        for mid in moved:
            say(f"    {mid}")
        return 0 if moved else 1
    messages = await parked(url, args.queue)
    if args.message_id:
        messages = [m for m in messages if m["message_id"] == args.message_id]
    if args.action == "show":
        if not messages:
            say("no such message parked")
            return 1
        say(json.dumps(messages if args.all or not args.message_id else messages[0], indent=2))
        return 0
    say(f"{topology.dlq_name(args.queue)}: {len(messages)} parked")
    for m in messages:
        code = f" {m['error_code']}" if m["error_code"] else ""
        say(
            f"    {m['message_id']} {m['type']} {m['error_class']}{code}: {m['error']}"
            f" (attempt {m['attempt']}, {m['timestamp']})"
        )
    return 0
