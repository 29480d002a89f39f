"""The whole pipeline as processes: five services and two simulators, each its own console
script configured only by ``MLC_`` variables. Used by the end-to-end tests and the demo.

``PipelineStack`` starts them in dependency order, waits for each ``/readyz``, and stops them
with SIGTERM (then SIGKILL after a grace period), reporting any that did not exit cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.crypto import generate_key

__all__ = ["COMPONENTS", "PipelineStack", "free_port"]

#: (name, console script), in start order: simulators, then token-keeper (others ask it).
COMPONENTS = (
    ("sim-exact", "mlc-sim-exact"),
    ("sim-twilio", "mlc-sim-twilio"),
    ("token-keeper", "mlc-token-keeper"),
    ("auditor", "mlc-auditor"),
    ("dispatcher", "mlc-dispatcher"),
    ("enricher", "mlc-enricher"),
    ("ingress", "mlc-ingress"),
)

#: The local ports of architecture section 8.
DEFAULT_PORTS = {
    "ingress": 8080,
    "enricher": 8081,
    "dispatcher": 8082,
    "auditor": 8083,
    "token-keeper": 8084,
    "sim-exact": 8090,
    "sim-twilio": 8091,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PipelineStack:
    amqp_url: str
    database_url: str
    log_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    secret_key: str = field(default_factory=generate_key)
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    @classmethod
    def on_free_ports(cls, amqp_url: str, database_url: str, log_dir: Path) -> PipelineStack:
        return cls(amqp_url, database_url, log_dir, {n: free_port() for n in DEFAULT_PORTS})

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self, name: str) -> dict[str, str]:
        ingress = self.url("ingress")
        return {
            **os.environ,
            "MLC_AMQP_URL": self.amqp_url,
            "MLC_DATABASE_URL": self.database_url,
            "MLC_HTTP_PORT": str(self.ports[name]),
            "MLC_SECRET_KEY": self.secret_key,
            "MLC_PUBLIC_BASE_URL": ingress,
            "MLC_EXACT_BASE_URL": self.url("sim-exact"),
            "MLC_TWILIO_API_BASE_URL": self.url("sim-twilio"),
            "MLC_SENDGRID_API_BASE_URL": self.url("sim-twilio"),
            "MLC_SIM_EXACT_PUBLIC_URL": self.url("sim-exact"),
            "MLC_SIM_EXACT_CALLBACK_URL": f"{ingress}/webhooks/exact/default",
            "MLC_SIM_TWILIO_EVENT_WEBHOOK_URL": f"{ingress}/webhooks/sendgrid/events",
            "MLC_SIM_TWILIO_INBOUND_URL": f"{ingress}/webhooks/twilio/inbound",
            **self.extra_env,
        }

    async def start(self, *, timeout: float = 60.0) -> None:
        for name, _ in COMPONENTS:
            await self.start_one(name, timeout=timeout)

    async def start_one(self, name: str, *, timeout: float = 60.0) -> None:
        """Start one component (appending to its log) and wait until it is ready."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        script = dict(COMPONENTS)[name]
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / script),
                env=self.env(name),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        await self.wait_ready(name, timeout=timeout)

    async def kill(self, name: str) -> None:
        """SIGKILL one component, as a crash or an OOM kill would: no drain, no cleanup."""
        process = self.processes[name]
        if process.returncode is None:
            process.kill()
            await process.wait()

    async def wait_ready(self, name: str, *, timeout: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                process = self.processes[name]
                if process.returncode is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode}; see "
                        f"{self.log_dir / (name + '.log')}"
                    )
                try:
                    if (await client.get(f"{self.url(name)}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError(
                        f"{name} not ready within {timeout}s; see {self.log_dir / (name + '.log')}"
                    )
                await asyncio.sleep(0.1)

    async def stop(self, *, grace: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every process (reverse order); returns each exit code."""
        codes: dict[str, int | None] = {}
        for name, _ in reversed(COMPONENTS):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), grace)
                except TimeoutError:
                    process.kill()
                    await process.wait()
            codes[name] = process.returncode
        return codes
