"""Bases of every wire model: frozen, unknown fields kept (forward compatibility)."""

from __future__ import annotations

import uuid
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = ["NAMESPACE", "SCHEMA_VERSION", "Command", "Event", "Message", "stable_id"]

#: Header ``x-schema-version`` of every message. Contracts change only by addition; a breaking
#: change gets a new version or a new message type.
SCHEMA_VERSION = "1"

#: Namespace of the deterministic ids (uuid5) derived from natural identities.
NAMESPACE = uuid.UUID("0f5c3b52-7a4e-4d8e-9a51-6c0e2b1d7f30")


def stable_id(*parts: object) -> uuid.UUID:
    """A deterministic id for a fact with a natural identity (same parts, same id)."""
    return uuid.uuid5(NAMESPACE, "\x1f".join(str(p) for p in parts))


class Message(BaseModel):
    """A message body. ``extra="allow"``: a newer producer's fields survive a round trip."""

    model_config = ConfigDict(frozen=True, extra="allow")

    #: The exchange it travels on and its routing key; subclasses set both.
    exchange: ClassVar[str]
    routing_key: ClassVar[str]

    def key(self) -> str:
        """The routing key of this instance (some types derive it from a field)."""
        return self.routing_key

    def message_type(self) -> str:
        """The AMQP ``type``, what a consumer's routes choose its model and handler by: the
        routing key, unless the body's shape differs from what that key usually carries."""
        return self.key()

    def message_id(self) -> str:
        """The AMQP ``message_id``: deterministic where the fact has a natural identity."""
        return str(uuid.uuid4())


class Event(Message):
    """A fact that happened; any number of consumers may react."""

    exchange: ClassVar[str] = "mlc.events"


class Command(Message):
    """A request for work with exactly one handler."""

    exchange: ClassVar[str] = "mlc.commands"
