"""Several messages of one routing key carried by one AMQP message (ADR 0010).

A batch has the AMQP ``type`` of its members, the header ``x-batch`` (how many) and content
type ``application/x-ndjson``. Its body is lines: the first a JSON array of each member's
``[message_id, correlation_id]``, then each member's body, one a line, byte for byte as it
would have been published alone (JSON as pydantic writes it never holds a raw newline).
``common.amqp.run_consumer`` settles each member as if it had come alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.errors import InvalidMessage

__all__ = ["BATCH_HEADER", "CONTENT_TYPE", "Member", "bodies", "decode", "encode"]

#: The header that marks a batch; its value is the number of members.
BATCH_HEADER = "x-batch"

CONTENT_TYPE = "application/x-ndjson"


@dataclass(frozen=True, slots=True)
class Member:
    """One message of a batch: its body (JSON) and the properties that are its own."""

    body: bytes
    message_id: str | None
    correlation_id: str | None


def encode(members: Sequence[Member]) -> bytes:
    """The body of a batch of ``members`` (at least one)."""
    for member in members:
        if b"\n" in member.body:
            raise ValueError("a batch member's body must be JSON on one line")
    ids = json.dumps([[m.message_id, m.correlation_id] for m in members], separators=(",", ":"))
    return b"\n".join([ids.encode(), *(m.body for m in members)])


def decode(body: bytes) -> list[Member]:
    """The members of a batch's ``body``; a body that is not one is an ``InvalidMessage``."""
    first, _, rest = body.partition(b"\n")
    try:
        ids = json.loads(first)
    except ValueError as exc:
        raise InvalidMessage("batch: the first line is not JSON") from exc
    bodies = rest.split(b"\n") if rest else []
    if (
        not isinstance(ids, list)
        or len(ids) != len(bodies)
        or not ids
        or not all(
            isinstance(pair, list)
            and len(pair) == 2
            and all(part is None or isinstance(part, str) for part in pair)
            for pair in ids
        )
    ):
        raise InvalidMessage(f"batch: {len(bodies)} bodies do not match the ids line")
    return [Member(b, mid, cid) for (mid, cid), b in zip(ids, bodies, strict=True)]


def bodies(body: bytes, headers: Mapping[str, Any] | None) -> list[bytes]:
    """The JSON bodies an AMQP message with ``body`` and ``headers`` carries: its own, or
    those of its batch's members (for a reader outside ``run_consumer``: a tap, a tool)."""
    if headers and BATCH_HEADER in headers:
        return [member.body for member in decode(body)]
    return [body]
