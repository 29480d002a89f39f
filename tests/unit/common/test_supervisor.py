"""The supervisor keeps background loops alive and tells readiness when one keeps failing."""

from __future__ import annotations

import asyncio

import pytest

from common.metrics import make_registry
from common.runtime import Supervisor
from common.testing import eventually


def errors(registry, loop: str) -> float:
    return registry.get_sample_value("mlc_background_errors_total", {"loop": loop}) or 0.0


async def test_a_loop_that_raises_is_restarted_and_its_errors_are_counted():
    registry = make_registry()
    supervisor = Supervisor(registry, backoff=0.01, backoff_cap=0.02)
    runs = 0
    passes = asyncio.Event()

    async def reconcile() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise ConnectionResetError("database went away")
        passes.set()
        await asyncio.sleep(3600)

    supervisor.start("reconcile", reconcile)
    await asyncio.wait_for(passes.wait(), timeout=5)
    assert runs == 3
    assert errors(registry, "reconcile") == 2
    await supervisor.stop()


async def test_readiness_fails_while_a_loop_keeps_failing_and_recovers_when_it_runs_again():
    registry = make_registry()
    supervisor = Supervisor(
        registry, backoff=0.01, backoff_cap=0.02, healthy_after=0.3, unhealthy_after=3
    )
    healthy = False

    async def keep_alive() -> None:
        if not healthy:
            raise OSError("connection refused")
        await asyncio.sleep(3600)

    supervisor.start("keep-alive", keep_alive)
    await eventually(lambda: supervisor.failures("keep-alive"), until=lambda n: n >= 3)
    with pytest.raises(RuntimeError, match="keep-alive failed"):
        await supervisor.check()
    healthy = True

    async def ready() -> bool:
        try:
            await supervisor.check()
        except RuntimeError:
            return False
        return True

    await eventually(ready, timeout=5, what="ready again after a healthy run")
    await supervisor.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        await supervisor.check()


async def test_a_loop_that_returns_is_treated_as_stopped_and_restarted():
    registry = make_registry()
    supervisor = Supervisor(registry, backoff=0.01, backoff_cap=0.02)
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    supervisor.start("once", once)
    await eventually(lambda: runs, until=lambda n: n >= 2, what="restarted after returning")
    assert errors(registry, "once") >= 1
    await supervisor.stop()


async def test_a_starting_service_waits_for_a_dependency_that_comes_up_late():
    from common.runtime import wait_for_dependency

    tries = 0

    async def connect() -> str:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise ConnectionRefusedError("broker restarting")
        return "connected"

    assert await wait_for_dependency("broker", connect, timeout=10) == "connected"
    assert tries == 3


async def test_a_dependency_that_never_comes_up_fails_after_the_startup_timeout_naming_it():
    from common.runtime import DependencyUnavailable, wait_for_dependency

    async def connect() -> str:
        raise ConnectionRefusedError("amqp://mlc-ingress:s3cret@rabbit:5672/ refused")

    with pytest.raises(DependencyUnavailable) as failed:
        await wait_for_dependency("broker", connect, where="rabbit:5672", timeout=1)
    assert str(failed.value).startswith("the broker at rabbit:5672 did not answer within 1 s")
    assert "s3cret" not in str(failed.value)
    assert isinstance(failed.value.__cause__, ConnectionRefusedError)
