"""Pure retry policy: which delay tier an attempt goes to, or none when they are used up."""

from __future__ import annotations

from common.topology import RETRY_TIERS

__all__ = ["next_tier"]


def next_tier(
    attempt: int, retry_after: float | None = None, *, indefinite: bool = False
) -> int | None:
    """The delay (seconds) for the retry after failed ``attempt`` (1-based), or None for DLQ.

    Tiers grow with the attempt number. A vendor's ``retry_after`` hint moves the retry to the
    first tier at least that long, so a rate-limited call is not retried before the reset.
    ``indefinite`` work never runs out of tiers: it keeps the longest one.
    """
    if indefinite:
        attempt = min(max(attempt, 1), len(RETRY_TIERS))
    if attempt < 1 or attempt > len(RETRY_TIERS):
        return None
    tier = RETRY_TIERS[attempt - 1]
    if retry_after is not None:
        longer = [t for t in RETRY_TIERS if t >= retry_after]
        tier = max(tier, longer[0] if longer else RETRY_TIERS[-1])
    return tier
