"""A stack refuses to start a component on a port something else answers on: that process
would answer ``/readyz`` in its place, with its own state (a simulator left over from an
earlier run whose token chain had moved on)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from common.testing.stack import DEFAULT_PORTS, PipelineStack


async def test_a_component_whose_port_is_taken_is_refused_before_it_is_started(
    tmp_path: Path,
) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = int(listener.getsockname()[1])
        stack = PipelineStack(
            "amqp://guest:guest@127.0.0.1:5672/unused",
            "postgresql://postgres@127.0.0.1:5432/unused",
            tmp_path,
            {**DEFAULT_PORTS, "sim-exact": taken},
        )
        with pytest.raises(RuntimeError) as refused:
            await stack.start_one("sim-exact")
    assert str(refused.value).startswith(f"sim-exact: port {taken} is already in use")
    assert stack.processes == {}
