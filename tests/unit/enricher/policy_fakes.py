"""Fakes of the Decider's ports (notices, preferences, filtered reads), for unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID

from common.contracts import Channel, Message
from enricher.adapters.notices import Notice, NoticeKey
from enricher.customers import Customers
from enricher.decisions import Decider
from enricher.rulebook import RuleBook
from enricher.texts import Texts

#: A weekday at noon in Amsterdam: inside the default quiet-hours window.
NOON = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)


class FakeNotices:
    def __init__(self) -> None:
        self.rows: dict[NoticeKey, Notice] = {}

    async def get(self, key: NoticeKey) -> Notice | None:
        return self.rows.get(key)

    async def of_document(self, connection_id, division, entity, document_id):  # type: ignore[no-untyped-def]
        return {
            k.rule: n
            for k, n in self.rows.items()
            if (k.connection_id, k.division, k.entity, k.document_id)
            == (connection_id, division, entity, document_id)
        }

    async def record(self, key, state, *, due_at, number, message=None, detail=None):  # type: ignore[no-untyped-def]
        old = self.rows.get(key)
        if old is not None and old.state == "cancelled":
            return
        self.rows[key] = Notice(key, state, due_at, number, message, detail)

    async def cancel_invoice(
        self, connection_id, division, *, entities, document_id, number, reason
    ):  # type: ignore[no-untyped-def]
        n = 0
        for key, row in list(self.rows.items()):
            if (
                key.connection_id == connection_id
                and key.entity in entities
                and row.state == "pending"
                and (key.document_id == document_id or (number and row.document_number == number))
            ):
                self.rows[key] = Notice(
                    key, "cancelled", row.due_at, row.document_number, None, reason
                )
                n += 1
        return n

    async def cancel_document(self, connection_id, division, entity, document_id, reason):  # type: ignore[no-untyped-def]
        return await self.cancel_invoice(
            connection_id,
            division,
            entities=[entity],
            document_id=document_id,
            number=None,
            reason=reason,
        )

    def states(self) -> dict[str, str]:
        return {key.rule: row.state for key, row in self.rows.items()}


class FakePreferences:
    def __init__(self, preferences: dict[str, Channel] | None = None) -> None:
        self.preferences = preferences or {}

    async def get_many(self, connection_id: str, contact_ids: Sequence[UUID]) -> dict[str, Channel]:
        return {str(c): self.preferences[str(c)] for c in contact_ids if str(c) in self.preferences}


class FakeFiltered:
    """Answers the division's name and records every filtered read."""

    def __init__(self, company: str = "Bakkerij Demo B.V.") -> None:
        self.company = company
        self.calls: list[tuple[str, str]] = []

    async def get_filtered(self, connection_id, division, resource, filter_, select):  # type: ignore[no-untyped-def]
        self.calls.append((resource, filter_))
        if resource == "hrm/Divisions":
            return [{"Code": division, "Description": self.company}] if self.company else []
        return []


def decider(
    exact,  # type: ignore[no-untyped-def]
    cache,
    *,
    notices: FakeNotices | None = None,
    preferences: FakePreferences | None = None,
    filtered: FakeFiltered | None = None,
    rules: Path | None = None,
    now: datetime = NOON,
) -> Decider:
    return Decider(
        exact=exact,
        filtered=filtered or FakeFiltered(),
        customers=Customers(exact, cache),
        rulebook=RuleBook(rules),
        texts=Texts(),
        notices=notices or FakeNotices(),
        preferences=preferences or FakePreferences(),
        clock=lambda: now,
    )


def messages(out: list[Message], kind: type[Message]) -> list[Message]:
    return [m for m in out if isinstance(m, kind)]
