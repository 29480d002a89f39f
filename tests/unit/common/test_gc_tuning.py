"""``common.runtime.tune_gc``: the collector's thresholds a service starts with, and the
refusal of a value it cannot understand."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from common.runtime import GC_THRESHOLD, run_until_stopped, tune_gc


@pytest.fixture(autouse=True)
def _restore_collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_a_service_starts_with_the_raised_thresholds_and_its_start_up_objects_frozen() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)

    assert tune_gc({}) == GC_THRESHOLD
    assert gc.get_threshold() == GC_THRESHOLD
    assert gc.get_freeze_count() > 0


def test_the_variable_sets_the_young_threshold_and_may_set_the_older_ones() -> None:
    gc.set_threshold(700, 10, 10)

    assert tune_gc({"MLC_GC_THRESHOLD": "5000"}) == (5000, 10, 10)
    assert tune_gc({"MLC_GC_THRESHOLD": " 3000,5,7 "}) == (3000, 5, 7)


def test_python_leaves_the_collector_as_the_interpreter_set_it() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)

    assert tune_gc({"MLC_GC_THRESHOLD": "python"}) == (700, 10, 10)
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("value", ["many", "0", "100,-1", "1,2,3,4", "1.5", ","])
def test_a_value_it_cannot_understand_is_refused_naming_the_variable(value: str) -> None:
    gc.set_threshold(700, 10, 10)

    with pytest.raises(ValueError, match="MLC_GC_THRESHOLD"):
        tune_gc({"MLC_GC_THRESHOLD": value})
    assert gc.get_threshold() == (700, 10, 10)


def test_a_service_given_a_bad_value_exits_with_one_line_before_it_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLC_GC_THRESHOLD", "lots")
    started = []

    async def run(stop: object) -> None:
        started.append(stop)

    with pytest.raises(SystemExit) as exited:
        run_until_stopped("auditor", run)

    message = str(exited.value)
    assert message.startswith("mlc-auditor: cannot start: MLC_GC_THRESHOLD='lots'")
    assert "\n" not in message
    assert started == []


@pytest.mark.parametrize(("module", "name"), [("ingress", "ingress"), ("sim_twilio", "sim-twilio")])
def test_processes_started_by_aiohttp_refuse_a_bad_value_too(module: str, name: str) -> None:
    env = {**os.environ, "MLC_GC_THRESHOLD": "lots", "MLC_PROFILE": "simulator"}
    done = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode != 0
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"mlc-{name}: cannot start: MLC_GC_THRESHOLD='lots'")
    )
