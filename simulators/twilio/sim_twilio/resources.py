"""Shapes of the 2010-04-01 API resources the simulator returns: Message and Call.

Every property of ``api.v2010.account.message`` / ``api.v2010.account.call`` is present, as in
Twilio's own responses; dates are RFC 2822 strings (``Thu, 24 Aug 2023 05:01:45 +0000``), counts
are strings, SIDs are a two-letter prefix plus 32 lower-case hex digits.
"""

from __future__ import annotations

import math
import secrets
from datetime import datetime
from email.utils import format_datetime
from typing import Any

__all__ = [
    "API_VERSION",
    "call_resource",
    "message_resource",
    "new_sid",
    "rfc2822",
    "segments",
]

API_VERSION = "2010-04-01"

# GSM 03.38 basic set, and the extension set whose characters cost two septets.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")


def new_sid(prefix: str) -> str:
    """``prefix`` + 32 hex digits, e.g. ``SM`` + ...: the shape every Twilio SID has."""
    return prefix + secrets.token_hex(16)


def rfc2822(moment: datetime | None) -> str | None:
    """Twilio's date format (``+0000``), or ``None``."""
    return None if moment is None else format_datetime(moment)


def segments(body: str) -> int:
    """SMS segments for ``body``: 160/153 GSM-7 septets or 70/67 UCS-2 units per segment.

    One non-GSM character (an emoji, a non-breaking space) switches the whole message to UCS-2.
    """
    if not body:
        return 1
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in body):
        septets = sum(2 if c in _GSM_EXTENDED else 1 for c in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def message_resource(
    *,
    sid: str,
    account_sid: str,
    to: str,
    from_: str | None,
    messaging_service_sid: str | None,
    body: str,
    num_media: int,
    status: str,
    created: datetime,
) -> dict[str, Any]:
    """A freshly created outbound Message as the create call returns it."""
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Messages/{sid}"
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": body,
        "date_created": rfc2822(created),
        "date_sent": None,
        "date_updated": rfc2822(created),
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": from_,
        "messaging_service_sid": messaging_service_sid,
        "num_media": str(num_media),
        # With a Messaging Service Twilio answers "0" until the sender is picked.
        "num_segments": "0" if messaging_service_sid else str(segments(body)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
        "to": to,
        "uri": f"{uri}.json",
    }


def call_resource(
    *, sid: str, account_sid: str, to: str, from_: str, created: datetime
) -> dict[str, Any]:
    """A freshly created outbound Call (status ``queued``)."""
    uri = f"/{API_VERSION}/Accounts/{account_sid}/Calls/{sid}"
    subresources = (
        "notifications",
        "recordings",
        "payments",
        "events",
        "siprec",
        "streams",
        "transcriptions",
        "user_defined_message_subscriptions",
        "user_defined_messages",
    )
    return {
        "account_sid": account_sid,
        "answered_by": None,
        "api_version": API_VERSION,
        "caller_name": None,
        "date_created": rfc2822(created),
        "date_updated": rfc2822(created),
        "direction": "outbound-api",
        "duration": None,
        "end_time": None,
        "forwarded_from": None,
        "from": from_,
        "from_formatted": from_,
        "group_sid": None,
        "parent_call_sid": None,
        "phone_number_sid": None,
        "price": None,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": None,
        "status": "queued",
        "subresource_uris": {
            name: f"{uri}/{''.join(p.capitalize() for p in name.split('_'))}.json"
            for name in subresources
        },
        "to": to,
        "to_formatted": to,
        "trunk_sid": None,
        "uri": f"{uri}.json",
    }
