"""Fixtures of the deployment tests: each overlay rendered (``k8s_render``)."""

from __future__ import annotations

import pytest
from k8s_render import OVERLAYS, render


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[dict, ...]:
    """Each overlay's rendered objects in turn."""
    return render(request.param)


@pytest.fixture
def production() -> tuple[dict, ...]:
    return render("production")


@pytest.fixture
def simulated() -> tuple[dict, ...]:
    return render("simulated")
