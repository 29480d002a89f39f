"""The whole pipeline as processes on free ports, against this session's vhost and database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
import pytest_asyncio

from common import topology
from common.testing.stack import PipelineStack
from sim_exact.client import SimExactAdmin
from sim_twilio.client import SimTwilioAdmin


class Pipeline:
    """Handles on the running stack for the tests: simulators, HTTP, broker probes."""

    def __init__(
        self,
        stack: PipelineStack,
        broker: aio_pika.abc.AbstractRobustConnection,
        http: httpx.AsyncClient,
        exact: SimExactAdmin,
        twilio: SimTwilioAdmin,
    ) -> None:
        self.stack, self.broker, self.http = stack, broker, http
        self.exact, self.twilio = exact, twilio
        self._probe: aio_pika.abc.AbstractChannel | None = None

    async def depth(self, queue: str) -> int:
        # One probe channel for every look (opening and closing one per queue is slow, and a
        # robust channel closed mid-restore can wait forever); not robust, so nothing is
        # re-declared behind the test's back.
        if self._probe is None or self._probe.is_closed:
            self._probe = await self.broker.channel()
        declared = await asyncio.wait_for(
            self._probe.declare_queue(queue, passive=True, robust=False), timeout=10
        )
        return declared.declaration_result.message_count or 0

    async def trail(self, number: str) -> list[dict[str, object]]:
        """The invoice's trail, read with the admin token the stack gave the auditor."""
        answer = await self.http.get(
            f"{self.stack.url('auditor')}/trail",
            params={"number": number},
            headers={"Authorization": f"Bearer {self.stack.auditor_admin_token}"},
        )
        answer.raise_for_status()
        return list(answer.json()["notifications"])

    async def post_exact(self, body: bytes, connection: str = "default") -> httpx.Response:
        return await self.http.post(
            f"{self.stack.url('ingress')}/webhooks/exact/{connection}",
            content=body,
            headers={"Content-Type": "application/json"},
        )

    async def parked(self) -> dict[str, int]:
        """Depth of every DLQ and retry queue that holds something."""
        names = [topology.dlq_name(q) for q, s in topology.QUEUES.items() if s.retries]
        names += [
            topology.retry_queue_name(q, t)
            for q, s in topology.QUEUES.items()
            if s.retries
            for t in topology.RETRY_TIERS
        ]
        depths = {name: await self.depth(name) for name in names}
        return {name: n for name, n in depths.items() if n}


@pytest_asyncio.fixture(scope="package")
async def pipeline(amqp_url: str, database_url: str, tmp_path_factory) -> AsyncIterator[Pipeline]:  # type: ignore[no-untyped-def]
    logs: Path = tmp_path_factory.mktemp("pipeline-logs")
    stack = PipelineStack.on_free_ports(amqp_url, database_url, logs)
    # the enricher's rules for these tests (quiet hours off, a short reminder chain) and a
    # scheduler that looks for due reminders twice a second
    stack.extra_env.update(
        {
            "MLC_ENRICHER_RULES_PATH": str(Path(__file__).parent / "rules"),
            "MLC_ENRICHER_SCHEDULE_SECONDS": "0.5",
        }
    )
    try:
        await stack.start()
    except Exception:
        await stack.stop()
        raise
    broker = await aio_pika.connect_robust(
        amqp_url, client_properties={"connection_name": "e2e-tests"}
    )
    async with (
        httpx.AsyncClient(timeout=10) as http,
        SimExactAdmin(stack.url("sim-exact")) as exact,
        SimTwilioAdmin(stack.url("sim-twilio")) as twilio,
    ):
        yield Pipeline(stack, broker, http, exact, twilio)
    await broker.close()
    codes = await stack.stop()
    assert all(code == 0 for code in codes.values()), f"unclean stop: {codes}; logs in {logs}"
