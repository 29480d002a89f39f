"""When a notice may go out: quiet hours in the recipient's time zone (pure functions).

A non-urgent notice outside the window is held until the window opens. Windows are wall-clock
times in the recipient's zone, so across a DST change the UTC moment of 08:00 moves by an hour
and the hold is computed on local dates, never by adding 24 hours::

    Sat 26 Oct 2030 22:00 CEST (20:00 UTC)  ->  Sun 27 Oct 10:00 CET (09:00 UTC)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.core import get_global

from enricher.rules import QuietHours

__all__ = ["next_allowed", "zone_of_country"]


@lru_cache(maxsize=256)
def zone_of_country(country: str, fallback: str) -> str:
    """The country's time zone when it has exactly one (CLDR data via Babel), else
    ``fallback`` (the connection's zone): a country spanning zones cannot be guessed."""
    zones = get_global("territory_zones").get(country.upper().strip(), ())
    if len(zones) == 1:
        try:
            ZoneInfo(zones[0])
            return str(zones[0])
        except ZoneInfoNotFoundError:
            return fallback
    return fallback


def next_allowed(now: datetime, time_zone: str, quiet: QuietHours) -> datetime:
    """``now`` if it falls in the window of the recipient's local day, else the UTC moment
    the next window opens."""
    if not quiet.enabled:
        return now
    zone = ZoneInfo(time_zone)
    local_today = now.astimezone(zone).date()
    for days in range(8):
        day = local_today + timedelta(days=days)
        window = quiet.weekends if day.weekday() >= 5 else quiet.weekdays
        start = datetime.combine(day, window.start, tzinfo=zone).astimezone(UTC)
        end = datetime.combine(day, window.end, tzinfo=zone).astimezone(UTC)
        if now < start:
            return start
        if now < end:
            return now
    raise AssertionError("a week always has a window")  # pragma: no cover
