"""Faults injected into the next matching API calls (``POST /_sim/faults``).

Kinds::

    http_500   500 with an error envelope
    http_503   503 with an HTML maintenance page (clients must not assume a JSON body)
    http_429   429 with exhausted minutely headers
    http_401   401 with an error envelope (an access token the server no longer accepts)
    latency    wait ``seconds`` (default 5), then answer normally

Each fault applies to the next ``count`` calls whose path and query contain ``path_contains``
(any ``/api/`` call when unset). An injected answer bypasses auth, limits and error counting.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["KINDS", "Fault", "Faults"]

KINDS = frozenset({"http_500", "http_503", "http_429", "http_401", "latency"})


@dataclass
class Fault:
    id: int
    kind: str
    remaining: int
    path_contains: str | None = None
    seconds: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """Pending faults, consumed in the order they were added."""

    def __init__(self) -> None:
        self._pending: list[Fault] = []
        self._ids = itertools.count(1)

    def add(
        self,
        kind: str,
        count: int = 1,
        path_contains: str | None = None,
        seconds: float | None = None,
    ) -> Fault:
        """Queue a fault; ``ValueError`` for an unknown kind or a count below 1."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        if seconds is not None and seconds < 0:
            raise ValueError("seconds must not be negative")
        fault = Fault(next(self._ids), kind, count, path_contains, seconds)
        self._pending.append(fault)
        return fault

    def take(self, path_qs: str) -> Fault | None:
        """The fault for this call, if any; uses up one of its count."""
        for fault in self._pending:
            if fault.path_contains is None or fault.path_contains in path_qs:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._pending.remove(fault)
                return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        return [fault.as_dict() for fault in self._pending]

    def clear(self) -> None:
        self._pending.clear()
