"""The whole pipeline as processes: five services and two simulators, each its own console
script configured only by ``MLC_`` variables. Used by the end-to-end tests and the demo.

``PipelineStack`` starts them in dependency order, waits for each ``/readyz``, and stops them
with SIGTERM (then SIGKILL after a grace period), reporting any that did not exit cleanly.

As in production, each service connects to RabbitMQ as a user of its own with only its own
permissions (``<vhost>-<service>``, random passwords, created at ``start`` with the topology
and deleted at ``stop``), token-keeper answers each RPC only to the services entitled to it
(``MLC_RPC_USERS``), and only token-keeper gets ``MLC_SECRET_KEY``. Every component runs
under the simulator profile (``MLC_PROFILE=simulator``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from common.crypto import generate_key
from common.testing.infra import (
    BrokerAdmin,
    ServiceUsers,
    create_service_users,
    delete_service_users,
    topology_definitions,
)

__all__ = ["COMPONENTS", "PipelineStack", "free_port", "port_taken"]

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


def port_taken(port: int) -> bool:
    """Something listens on 127.0.0.1:``port``."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class PipelineStack:
    amqp_url: str
    database_url: str
    log_dir: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    secret_key: str = field(default_factory=generate_key)
    #: The auditor's data key and admin token (MLC_AUDITOR_*), generated once per stack.
    auditor_data_key: str = field(default_factory=generate_key)
    auditor_admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    #: Creates the service users (default: the management API or rabbitmqctl of the broker
    #: at ``amqp_url``, whose user must be an administrator). Required on the default vhost.
    broker_admin: BrokerAdmin | None = None
    service_users: ServiceUsers | None = None

    @classmethod
    def on_free_ports(cls, amqp_url: str, database_url: str, log_dir: Path) -> PipelineStack:
        return cls(amqp_url, database_url, log_dir, {n: free_port() for n in DEFAULT_PORTS})

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self, name: str) -> dict[str, str]:
        ingress = self.url("ingress")
        return {
            **os.environ,
            "MLC_AMQP_URL": self.amqp_url_of(name),
            "MLC_DATABASE_URL": self.database_url,
            "MLC_HTTP_PORT": str(self.ports[name]),
            # the simulators' credentials on both sides, as only the simulator profile allows
            "MLC_PROFILE": "simulator",
            "MLC_PUBLIC_BASE_URL": ingress,
            "MLC_EXACT_BASE_URL": self.url("sim-exact"),
            "MLC_TWILIO_API_BASE_URL": self.url("sim-twilio"),
            "MLC_SENDGRID_API_BASE_URL": self.url("sim-twilio"),
            "MLC_SIM_EXACT_PUBLIC_URL": self.url("sim-exact"),
            "MLC_SIM_EXACT_CALLBACK_URL": f"{ingress}/webhooks/exact/default",
            "MLC_SIM_TWILIO_EVENT_WEBHOOK_URL": f"{ingress}/webhooks/sendgrid/events",
            "MLC_SIM_TWILIO_INBOUND_URL": f"{ingress}/webhooks/twilio/inbound",
            **(self._auditor_env() if name == "auditor" else {}),
            **(self._token_keeper_env() if name == "token-keeper" else {}),
            **self.extra_env,
        }

    def amqp_url_of(self, name: str) -> str:
        """The service's own login once ``start`` created it (the simulators use none)."""
        if self.service_users is None or name not in self.service_users.urls:
            return self.amqp_url
        return self.service_users.urls[name]

    def _token_keeper_env(self) -> dict[str, str]:
        """Only token-keeper gets the sealing key, and whom to answer: the stack's users."""
        env = {"MLC_SECRET_KEY": self.secret_key}
        if self.service_users is not None:
            env["MLC_RPC_USERS"] = json.dumps(self.service_users.users)
        return env

    def _auditor_env(self) -> dict[str, str]:
        """Only the auditor gets its data key and admin token."""
        return {
            "MLC_AUDITOR_DATA_KEY": self.auditor_data_key,
            "MLC_AUDITOR_ADMIN_TOKEN": self.auditor_admin_token,
        }

    async def start(self, *, timeout: float = 60.0) -> None:
        await self.create_users()
        for name, _ in COMPONENTS:
            await self.start_one(name, timeout=timeout)

    async def create_users(self) -> None:
        """The topology (as a broker that loaded the definitions has it) and a user per
        service on the stack's vhost, unless already created."""
        if self.service_users is not None:
            return
        admin = self._admin()
        vhost = urllib.parse.unquote(urllib.parse.urlsplit(self.amqp_url).path[1:]) or "/"
        owner = urllib.parse.unquote(urllib.parse.urlsplit(self.amqp_url).username or "guest")
        await asyncio.to_thread(admin.import_definitions, topology_definitions(vhost, owner))
        self.service_users = await asyncio.to_thread(create_service_users, admin, self.amqp_url)

    async def delete_users(self) -> None:
        if self.service_users is not None:
            await asyncio.to_thread(delete_service_users, self._admin(), self.service_users)
            self.service_users = None

    def _admin(self) -> BrokerAdmin:
        if self.broker_admin is not None:
            return self.broker_admin
        if urllib.parse.urlsplit(self.amqp_url).path in ("", "/"):
            # rabbitmqctl would reach the machine's own node, whatever host the URL names
            raise ValueError("a stack on the default vhost needs its broker_admin")
        return BrokerAdmin.for_url(self.amqp_url)

    async def start_one(self, name: str, *, timeout: float = 60.0) -> None:
        """Start one component (appending to its log) and wait until it is ready. A port
        something else already listens on is refused first: ``/readyz`` would be answered by
        that other process (a component left over from an earlier run, with its own state)."""
        if port_taken(self.ports[name]):
            raise RuntimeError(
                f"{name}: port {self.ports[name]} is already in use (a component left over "
                "from an earlier run?); stop what listens there"
            )
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
        await self.delete_users()
        return codes
