"""Forward-only ordering of provider statuses: an older status never overwrites a newer one.

Twilio's callbacks carry no sequence number and arrive out of order and repeated, so a status
moves forward only by rank. One scale for the three channels (their status names only meet
where they mean the same)::

    SMS    accepted/scheduled/queued (1) < sending (2) < sent (3)
               < delivered / undelivered / failed / canceled (4) < read (5)
    voice  initiated/queued (1) < ringing (2) < in-progress (3)
               < completed / busy / no-answer / failed / canceled (4)
               < answered / voicemail (5)
    email  processed (1) < deferred (2) < delivered / bounce / dropped (4) < open (5)
               < click (6) < spamreport / unsubscribe / group_unsubscribe (7)

Rank 4 and above is final: no further news is needed (status checks stop asking). A call's
answering machine detection (``answered``: a person picked up; ``voicemail``: a machine or fax)
comes in its own callback, before or after the call's ``completed``; it ranks above
``completed`` so the trail ends on who answered whatever the arrival order. busy, no-answer,
failed and canceled end a call that nobody answered, so no detection result follows them.
"""

from __future__ import annotations

__all__ = ["FINAL_RANK", "rank"]

#: Rank of the final statuses: a notification below it still waits for news.
FINAL_RANK = 4

_RANKS = {
    "accepted": 1,
    "scheduled": 1,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
    # voice (Twilio call statuses)
    "initiated": 1,
    "ringing": 2,
    "in-progress": 3,
    "completed": 4,
    "busy": 4,
    "no-answer": 4,
    "answered": 5,  # answering machine detection: a human
    "voicemail": 5,  # answering machine detection: AnsweredBy machine_* or fax
    # email (SendGrid events)
    "processed": 1,
    "deferred": 2,
    "bounce": 4,
    "dropped": 4,
    "open": 5,
    "click": 6,
    "spamreport": 7,
    "unsubscribe": 7,
    "group_unsubscribe": 7,
}


def rank(status: str) -> int:
    """The status's rank; unknown statuses rank 0, so they never overwrite a known one."""
    return _RANKS.get(status.lower(), 0)
