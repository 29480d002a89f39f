"""A suppressed address ends the reminder chains that would have gone to it.

The dispatcher keeps the suppression list and refuses every send to a suppressed address; the
enricher hears of each addition (``suppression.added`` on ``enricher.suppressions``) so that
the steps still pending stop here, instead of firing one by one into the dispatcher's refusal.

A pending reminder has no recipient yet (it is chosen when it fires), so where it would go is
read from its chain: a notice of the same document already sent a command on the suppressed
channel to the suppressed address (matched by ``address_key``, never the address). A pending
notice ends when its rule sends on that channel only and to the same audience as a rule that
did; one that might still choose another channel, or another contact, stays pending (the
dispatcher still stops the send if it comes to the suppressed address). Notices on other
channels, of other addresses and (unless the suppression is install-wide, ``*``) of other
connections are not touched. A repeated event finds nothing pending left to end.
"""

from __future__ import annotations

import functools

import structlog

from common import amqp
from common.contracts import INSTALL_SCOPE, Channel, Message, SuppressionChanged
from enricher.decisions import NoticeMetrics
from enricher.ports import AddressedNotice, AddressedNotices, NoticeKey
from enricher.rulebook import RuleBook
from enricher.rules import Audience, Policy

__all__ = ["OUTCOME", "QUEUE", "routes", "suppression_added"]

log = structlog.get_logger("enricher")

#: The queue bound to ``suppression.added`` (``common.topology``).
QUEUE = "enricher.suppressions"

#: The ``mlc_enricher_notices_total`` outcome of a notice ended by a suppression.
OUTCOME = "suppressed"


async def suppression_added(
    event: SuppressionChanged,
    *,
    notices: AddressedNotices,
    rulebook: RuleBook,
    metrics: NoticeMetrics | None = None,
) -> list[Message]:
    """Cancel the pending notices that would go to the suppressed address; publishes nothing."""
    if event.action != "added":  # a lift starts no chain again: the next event decides
        return []
    scope = None if event.connection_id == INSTALL_SCOPE else event.connection_id
    found = await notices.pending_chains_to(scope, event.channel, event.address_key)
    doomed = [n.key for n in found if _reaches(rulebook, n, event.channel)]
    ended = await notices.cancel_pending(doomed, f"suppressed: {event.reason}")
    _count(metrics, ended)
    log.info(
        "reminders_stopped",
        reason="suppressed",
        suppression_reason=event.reason,
        channel=event.channel,
        scope=event.connection_id,
        address=event.address_masked,
        n=len(ended),
        left_pending=len(found) - len(doomed),
    )
    return []


def _reaches(rulebook: RuleBook, notice: AddressedNotice, channel: Channel) -> bool:
    """True when the notice can only go on ``channel`` to the contact its chain already sent
    to: its rule has that one channel and the audience of a rule that sent there. A rule no
    longer in the file decides nothing (the scheduler cancels a disabled rule's notice)."""
    policy = rulebook.for_connection(notice.key.connection_id)
    rule = policy.rule(notice.key.rule)
    if rule is None or rule.channels != (channel,):
        return False
    return any(_audience(policy, name) == rule.audience for name in notice.sent_by)


def _audience(policy: Policy, name: str) -> Audience | None:
    """The audience of rule ``name``, enabled or not (a rule switched off since its notice was
    sent still tells whom that notice went to)."""
    return next((r.audience for r in policy.rules if r.name == name), None)


def _count(metrics: NoticeMetrics | None, ended: list[NoticeKey]) -> None:
    if metrics is not None:
        for key in ended:
            metrics.count(key.entity, OUTCOME)


def routes(
    notices: AddressedNotices, rulebook: RuleBook, metrics: NoticeMetrics | None = None
) -> amqp.Routes:
    """What ``enricher.suppressions``'s consumer reacts to, with its ports bound."""
    return {
        f"{SuppressionChanged.routing_key}.added": (
            SuppressionChanged,
            functools.partial(
                suppression_added, notices=notices, rulebook=rulebook, metrics=metrics
            ),
        ),
    }
