"""What Twilio tells us, as ingress publishes it after verifying the callback signature:
message and call statuses (alone or several of one status together), and inbound SMS (with
their opt-out keywords)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from common.contracts.base import Event, stable_id

__all__ = ["InboundKind", "InboundSms", "TwilioStatus", "TwilioStatuses", "answered_status"]


class TwilioStatus(Event):
    """One status callback. Routing key ``twilio.status.<status>``."""

    routing_key: ClassVar[str] = "twilio.status"
    #: ``message`` (MessageSid, MessageStatus), ``call`` (CallSid, CallStatus), or ``email``
    #: (a SendGrid event recorded as a status of the message it names).
    resource: Literal["message", "call", "email"] = "message"
    provider_id: str
    status: str
    error_code: str | None = None
    raw: dict[str, str]
    received_at: datetime
    #: The connection whose own Twilio account sent the callback (its ``?connection=``), as
    #: ingress verified it: signed with that account's auth token and carrying its AccountSid.
    #: None: the install's account (or a status not from a callback). A consumer must not apply
    #: a status of one connection to another's notification: the SID alone is not proof.
    connection_id: str | None = None

    def key(self) -> str:
        return f"twilio.status.{self.status}"

    def message_id(self) -> str:
        # Twilio repeats callbacks; the same (sid, status) is the same fact.
        return str(stable_id("twilio.status", self.provider_id, self.status))


class TwilioStatuses(Event):
    """Status callbacks of one status, published together: those ingress received while its
    previous publish of that status waited for the broker's confirm (under load; a callback
    that finds nothing waiting goes out alone, as a ``TwilioStatus``). Routed like each of
    them (``twilio.status.<status>``); its type is ``twilio.statuses.<status>``. A consumer
    applies each status as it would have applied it alone."""

    routing_key: ClassVar[str] = "twilio.status"
    statuses: list[TwilioStatus] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_status(self) -> TwilioStatuses:
        if len({s.status for s in self.statuses}) != 1:
            raise ValueError("a batch holds callbacks of one status (its routing key)")
        return self

    def key(self) -> str:
        return self.statuses[0].key()

    def message_type(self) -> str:
        return f"twilio.statuses.{self.statuses[0].status}"

    def message_id(self) -> str:
        # The same callbacks batched again (a repeat after a failed confirm) are the same fact.
        return str(stable_id("twilio.statuses", *sorted(s.message_id() for s in self.statuses)))


def answered_status(answered_by: str | None) -> str | None:
    """The call status that answering machine detection's ``AnsweredBy`` stands for:
    ``answered`` (a person), ``voicemail`` (a machine or fax), None when it could not tell."""
    value = (answered_by or "").lower()
    if value == "human":
        return "answered"
    if value.startswith("machine") or value == "fax":
        return "voicemail"
    return None


#: What an inbound SMS asks for: ``stop`` (opt out), ``start`` (opt in again), ``help``, or
#: ``message`` (anything else, e.g. "STOP please", which Twilio does not treat as a keyword).
InboundKind = Literal["stop", "start", "help", "message"]


class InboundSms(Event):
    """An SMS a recipient sent to one of our numbers. Routing key ``twilio.inbound.<kind>``."""

    routing_key: ClassVar[str] = "twilio.inbound"
    connection_id: str | None = None
    account_sid: str | None = None
    message_sid: str
    #: The recipient who wrote (E.164; personal data, masked in logs).
    from_number: str
    #: Our number or the Messaging Service's number it was sent to.
    to_number: str
    messaging_service_sid: str | None = None
    kind: InboundKind
    #: The keyword as matched (``STOP``, ``AFMELDEN``...), or Twilio's ``OptOutType``.
    keyword: str | None = None
    received_at: datetime

    def key(self) -> str:
        return f"twilio.inbound.{self.kind}"

    def message_id(self) -> str:
        return str(stable_id("twilio.inbound", self.message_sid))
