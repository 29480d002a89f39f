"""What the enricher's handlers need: a reader of Exact records, and a clock."""

from __future__ import annotations

from typing import Any, Protocol
from uuid import UUID

__all__ = ["ExactReader", "Record"]

#: One Exact record as returned by the API (field name -> value), only the selected fields.
Record = dict[str, Any]


class ExactReader(Protocol):
    async def get_one(
        self,
        connection_id: str,
        division: int,
        resource: str,
        key_field: str,
        key: UUID,
        select: list[str],
    ) -> Record | None:
        """The record, or None when it no longer exists."""
        ...

    async def get_many(
        self, connection_id: str, division: int, resource: str, filter_: str, select: list[str]
    ) -> list[Record]:
        """Every record matching ``filter_`` (all pages)."""
        ...
