"""Every event the dispatcher queues in its outbox can be read back by the relay: an unknown
type would stop the relay at that row, and every event behind it would wait."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from common.contracts import SuppressionChanged
from dispatcher import outbox

SOURCES = Path(outbox.__file__).parent


def queued_event_types() -> set[str]:
    """Class names constructed in the dispatcher's modules that call queue_event or settle."""
    names: set[str] = set()
    for path in SOURCES.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            name = (
                node.func.id
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                else ""
            )
            if name.startswith("Notification") or name == "SuppressionChanged":
                names.add(name)
    return names


def test_every_event_class_the_dispatcher_builds_is_known_to_the_relay():
    known = {model.__name__ for model in outbox.OUTBOX_MODELS.values()}
    built = queued_event_types()
    assert built, "no events found: the scan is broken"
    assert built <= known, f"the relay cannot read {built - known}"


@pytest.mark.parametrize("action", ["added", "lifted"])
def test_a_suppression_change_reads_back_as_itself_from_its_routing_key(action):
    event = SuppressionChanged(
        action=action,
        connection_id="*",
        channel="sms",
        address_key="0" * 64,
        address_masked="+316******78",
        reason="opted_out",
        source="inbound:STOP",
        notification_id=uuid4(),
        occurred_at=datetime.now(UTC),
    )
    model = outbox.OUTBOX_MODELS[event.key()]
    assert model.model_validate(event.model_dump(mode="json")) == event
