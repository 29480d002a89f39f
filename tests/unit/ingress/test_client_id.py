"""An Exact webhook's ClientId is matched to the app's client id as a UUID: real Exact sends
a bare lower-case GUID, and an app's id is often configured with braces or in upper case."""

from __future__ import annotations

import pytest

from ingress.guards import same_client_id

SENT = "6b1d2c3e-4f50-4a61-8b72-9c8d7e6f5a40"


@pytest.mark.parametrize(
    "configured",
    [
        "6b1d2c3e-4f50-4a61-8b72-9c8d7e6f5a40",
        "{6B1D2C3E-4F50-4A61-8B72-9C8D7E6F5A40}",
        "6B1D2C3E4F504A618B729C8D7E6F5A40",
        " 6b1d2c3e-4f50-4a61-8b72-9c8d7e6f5a40 ",
    ],
)
def test_the_same_client_id_written_another_way_matches(configured: str) -> None:
    assert same_client_id(SENT, configured)


@pytest.mark.parametrize(
    "configured",
    ["6b1d2c3e-4f50-4a61-8b72-9c8d7e6f5a41", "not-a-guid", ""],
)
def test_another_or_malformed_client_id_does_not_match(configured: str) -> None:
    assert not same_client_id(SENT, configured)


def test_two_equal_texts_that_are_not_guids_still_match_ignoring_case() -> None:
    assert same_client_id("Sim-Client", "sim-client")
