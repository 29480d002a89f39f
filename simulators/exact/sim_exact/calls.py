"""The record of API calls the simulator answered (``GET /_sim/requests``).

Only the method, path, query, division, endpoint, status and time are kept: never a header or a
body, so no token or secret ends up in the record.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["MAX_CALLS", "CallLog", "CallRecord"]

#: Oldest records are dropped beyond this, so long simulations stay bounded in memory.
MAX_CALLS = 50_000


@dataclass(frozen=True)
class CallRecord:
    method: str
    path: str
    query: dict[str, str]
    division: int | None
    endpoint: str
    status: int
    at: str
    fault: str | None = None


class CallLog:
    def __init__(self, maxlen: int = MAX_CALLS) -> None:
        self._records: deque[CallRecord] = deque(maxlen=maxlen)

    def add(self, record: CallRecord) -> None:
        self._records.append(record)

    def records(
        self,
        *,
        path_contains: str | None = None,
        division: int | None = None,
        status: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records in arrival order, optionally narrowed down."""
        selected: Iterable[CallRecord] = self._records
        if path_contains is not None:
            selected = (r for r in selected if path_contains in r.path)
        if division is not None:
            selected = (r for r in selected if r.division == division)
        if status is not None:
            selected = (r for r in selected if r.status == status)
        return [asdict(record) for record in selected]

    def clear(self) -> None:
        self._records.clear()
