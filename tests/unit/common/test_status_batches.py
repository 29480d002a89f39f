"""TwilioStatuses, the status callbacks ingress publishes together: routed like each of them,
typed apart from them, one status per batch, and the same id for the same callbacks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from common.contracts import TwilioStatus, TwilioStatuses


def _status(n: int, status: str = "delivered") -> TwilioStatus:
    return TwilioStatus(
        provider_id=f"SM{n:032d}",
        status=status,
        raw={"MessageSid": f"SM{n:032d}", "MessageStatus": status},
        received_at=datetime(2026, 12, 1, tzinfo=UTC),
    )


def test_a_batch_is_routed_like_its_callbacks_and_typed_apart_from_them():
    batch = TwilioStatuses(statuses=[_status(1), _status(2)])
    assert batch.key() == _status(1).key() == "twilio.status.delivered"
    assert _status(1).message_type() == "twilio.status.delivered"
    assert batch.message_type() == "twilio.statuses.delivered"


def test_a_batch_of_mixed_statuses_or_of_none_is_refused():
    with pytest.raises(ValidationError, match="one status"):
        TwilioStatuses(statuses=[_status(1, "sent"), _status(2, "delivered")])
    with pytest.raises(ValidationError):
        TwilioStatuses(statuses=[])


def test_the_same_callbacks_in_any_order_are_the_same_message_and_others_are_not():
    one = TwilioStatuses(statuses=[_status(1), _status(2)])
    assert one.message_id() == TwilioStatuses(statuses=[_status(2), _status(1)]).message_id()
    assert one.message_id() != TwilioStatuses(statuses=[_status(1), _status(3)]).message_id()
    assert one.message_id() != _status(1).message_id()
