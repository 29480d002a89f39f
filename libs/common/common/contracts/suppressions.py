"""Suppressions: addresses that must not be sent to, and the facts of their changes.

The dispatcher owns the list (schema ``dispatch``) and consults it before every send. It is
fed by inbound STOP/START keywords, Twilio's opt-out and undeliverable error codes, SendGrid's
bounces, unsubscribes and spam reports, and operators (``mlc suppressions``). Each change is a
``SuppressionChanged`` event (``suppression.added`` / ``suppression.lifted``): the auditor keeps
them in the trail and the enricher ends reminder chains to a suppressed address.

An address never travels in clear here: ``address_key`` is a SHA-256 of the normalised address
(:func:`address_key`), which any service holding the address can compute to match it, and
``address_masked`` is what an operator may see.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import ClassVar, Literal
from uuid import UUID

from common.contracts.base import Event, stable_id
from common.contracts.notifications import Channel

__all__ = [
    "INSTALL_SCOPE",
    "SUPPRESSION_REASONS",
    "SuppressionChanged",
    "address_key",
    "address_key_sql",
    "normalise_address",
]

#: The scope of a suppression learnt on the install's own Twilio/SendGrid accounts (a STOP
#: sent to the shared number): it holds for every connection.
INSTALL_SCOPE = "*"

#: Why an address is suppressed.
SUPPRESSION_REASONS = (
    "opted_out",  # STOP keyword, Twilio 21610
    "unsubscribed",  # SendGrid unsubscribe / group_unsubscribe
    "spam_report",  # SendGrid spamreport
    "bounced",  # SendGrid hard bounce, or dropped as a bounced address
    "undeliverable",  # Twilio 30004/30005/30006: the number cannot get this channel
    "operator",  # added by hand
)


def normalise_address(address: str) -> str:
    """E.164 numbers as they are (without blanks), email addresses lower-cased."""
    address = address.strip()
    return address.lower() if "@" in address else address.replace(" ", "")


def address_key(address: str) -> str:
    """The key that stands for an address in the list and on the wire."""
    return hashlib.sha256(normalise_address(address).encode()).hexdigest()


def address_key_sql(address: str) -> str:
    """``address_key`` as a PostgreSQL expression over the text expression ``address`` (a
    trusted column expression, never input): trimmed, lower-cased when an email address,
    else without blanks, then SHA-256 in hex. The database's ``lower`` follows its ctype
    (``C.UTF-8`` and the like fold non-ASCII letters as Python does)."""
    trimmed = f"btrim({address})"
    return f"""encode(sha256(convert_to(
              CASE WHEN strpos({trimmed}, '@') > 0 THEN lower({trimmed})
                   ELSE replace({trimmed}, ' ', '') END, 'UTF8')), 'hex')"""


class SuppressionChanged(Event):
    """An address was added to or lifted from a connection's suppression list."""

    routing_key: ClassVar[str] = "suppression"
    action: Literal["added", "lifted"]
    #: The connection, or INSTALL_SCOPE.
    connection_id: str
    channel: Channel
    address_key: str
    address_masked: str
    #: One of SUPPRESSION_REASONS (of the suppression added or lifted).
    reason: str
    #: What told us: ``inbound:STOP``, ``twilio:21610``, ``sendgrid:bounce``, ``operator``...
    source: str
    #: The notification whose outcome taught it, when one did.
    notification_id: UUID | None = None
    #: The operator, and the reason given for a lift by hand.
    requested_by: str | None = None
    note: str | None = None
    occurred_at: datetime

    def key(self) -> str:
        return f"suppression.{self.action}"

    def message_id(self) -> str:
        return str(
            stable_id(
                "suppression",
                self.action,
                self.connection_id,
                self.channel,
                self.address_key,
                self.occurred_at.isoformat(),
            )
        )
