"""In-memory records per division, typed by their entity set, with change listeners.

Every insert, update and delete of a record calls the listeners with
``(division, entity_set, key, action)`` where action is ``"Update"`` or ``"Delete"``. Exact has
no ``Create`` action: creating a record fires ``Update`` (reference section 1.4).

Every insert and update also gives the record a new row version (the sync APIs'
``Timestamp``): a per-division counter higher than any before it, with no relation to a time;
a delete is kept with its own row version for ``sync/Deleted``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sim_exact.clock import Clock
from sim_exact.entities import DIVISIONS, ENTITY_SETS, EntitySet, FieldType

__all__ = ["Listener", "Row", "Store", "coerce"]

#: A record: field name -> Python value (str for guids, aware datetime, int, float, bool, None).
Row = dict[str, Any]
#: Called after each change with (division, entity set, key, "Update" | "Delete").
Listener = Callable[[int, EntitySet, Any, str], None]

_DATE = re.compile(r"^/Date\((-?\d+)\)/$")


def _to_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        match = _DATE.match(value)
        if match:
            return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise TypeError(f"not a date: {value!r}")


def coerce(kind: FieldType, value: Any) -> Any:
    """Convert a JSON-ish ``value`` to the Python value stored for a field of ``kind``.

    Raises ``ValueError`` or ``TypeError`` when the value does not fit.
    """
    if value is None:
        return None
    if kind == "guid":
        return str(uuid.UUID(str(value)))
    if kind == "datetime":
        return _to_datetime(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"not a boolean: {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"not an integer: {value!r}")
        return int(value)
    if kind == "float":
        if isinstance(value, bool):
            raise TypeError(f"not a number: {value!r}")
        return float(value)
    return str(value)


class Store:
    """Divisions and their records. Keys of guid-keyed sets are generated on insert."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._data: dict[int, dict[str, dict[Any, Row]]] = {}
        self.listeners: list[Listener] = []
        #: division -> the last row version handed out
        self._stamps: dict[int, int] = {}
        #: (division, entity path) -> key -> row version
        self._versions: dict[tuple[int, str], dict[Any, int]] = {}
        #: division -> (row version, entity set, key, deleted at) of each delete
        self._deleted: dict[int, list[tuple[int, EntitySet, Any, datetime]]] = {}

    # divisions -----------------------------------------------------------------------------

    def add_division(self, code: int, **fields: Any) -> Row:
        """Create a division (a company) with an empty set of records."""
        self._data.setdefault(code, {entity.path: {} for entity in ENTITY_SETS})
        return self.insert(code, DIVISIONS, {"Code": code, **fields}, notify=False)

    def has_division(self, code: int) -> bool:
        return code in self._data

    def divisions(self) -> list[int]:
        return sorted(self._data)

    # records -------------------------------------------------------------------------------

    def rows(self, division: int, entity: EntitySet) -> list[Row]:
        """Every record of ``entity`` in ``division`` (all divisions for ``hrm/Divisions``)."""
        if entity is DIVISIONS:
            return [row for code in self.divisions() for row in self._table(code, entity).values()]
        return list(self._table(division, entity).values())

    def get(self, division: int, entity: EntitySet, key: Any) -> Row | None:
        if entity is DIVISIONS:
            return self._table(key, entity).get(key) if self.has_division(key) else None
        return self._table(division, entity).get(self._key(entity, key))

    def find(self, entity: EntitySet, key: Any) -> tuple[int, Row] | None:
        """Look a record up in any division (the admin API addresses records by key alone)."""
        for division in self.divisions():
            row = self.get(division, entity, key)
            if row is not None:
                return division, row
        return None

    def insert(
        self, division: int, entity: EntitySet, fields: Mapping[str, Any], *, notify: bool = True
    ) -> Row:
        """Store a new record; unknown fields raise ``KeyError``, ill-typed ones ``ValueError``."""
        now = self._clock.now_dt()
        row: Row = dict.fromkeys(entity.fields)
        row.update(self._typed(entity, fields))
        if row[entity.key] is None and entity.fields[entity.key] == "guid":
            row[entity.key] = str(uuid.uuid4())
        if "Division" in entity.fields:
            row["Division"] = division
        row["Created"] = row["Created"] or now
        row["Modified"] = now
        table = self._table(division, entity)
        if row[entity.key] in table:
            raise ValueError(f"{entity.name} {row[entity.key]} already exists")
        table[row[entity.key]] = row
        self._versions.setdefault((division, entity.path), {})[row[entity.key]] = self._stamp(
            division
        )
        if notify:
            self._changed(division, entity, row[entity.key], "Update")
        return row

    def update(self, division: int, entity: EntitySet, key: Any, fields: Mapping[str, Any]) -> Row:
        """Change fields of a record and fire ``Update``; ``KeyError`` when it does not exist."""
        row = self._table(division, entity)[self._key(entity, key)]
        changes = self._typed(entity, fields)
        changes.pop(entity.key, None)
        changes.pop("Division", None)
        row.update(changes)
        row["Modified"] = self._clock.now_dt()
        self._versions.setdefault((division, entity.path), {})[row[entity.key]] = self._stamp(
            division
        )
        self._changed(division, entity, row[entity.key], "Update")
        return row

    def delete(self, division: int, entity: EntitySet, key: Any) -> Row:
        """Remove a record and fire ``Delete``; ``KeyError`` when it does not exist."""
        row = self._table(division, entity).pop(self._key(entity, key))
        self._versions.get((division, entity.path), {}).pop(row[entity.key], None)
        self._deleted.setdefault(division, []).append(
            (self._stamp(division), entity, row[entity.key], self._clock.now_dt())
        )
        self._changed(division, entity, row[entity.key], "Delete")
        return row

    def clear(self) -> None:
        self._data.clear()
        self._stamps.clear()
        self._versions.clear()
        self._deleted.clear()

    # row versions (sync APIs) ----------------------------------------------------------------

    def version(self, division: int, entity: EntitySet, key: Any) -> int:
        """The row version of a record (0 for a record stored before versions existed)."""
        return self._versions.get((division, entity.path), {}).get(key, 0)

    def deletions(self, division: int) -> list[tuple[int, EntitySet, Any, datetime]]:
        """Every delete in ``division``: (row version, entity set, key, when)."""
        return list(self._deleted.get(division, ()))

    def _stamp(self, division: int) -> int:
        self._stamps[division] = self._stamps.get(division, 1) + 1
        return self._stamps[division]

    # internals -----------------------------------------------------------------------------

    def _table(self, division: int, entity: EntitySet) -> dict[Any, Row]:
        return self._data[division][entity.path]

    @staticmethod
    def _key(entity: EntitySet, key: Any) -> Any:
        try:
            return coerce(entity.fields[entity.key], key)
        except (TypeError, ValueError):
            return key

    @staticmethod
    def _typed(entity: EntitySet, fields: Mapping[str, Any]) -> Row:
        unknown = [name for name in fields if name not in entity.fields]
        if unknown:
            raise KeyError(f"{entity.name} has no field {', '.join(unknown)}")
        return {name: coerce(entity.fields[name], value) for name, value in fields.items()}

    def _changed(self, division: int, entity: EntitySet, key: Any, action: str) -> None:
        for listener in self.listeners:
            listener(division, entity, key, action)
