"""A private RabbitMQ node in a temporary folder, on free loopback ports, for tests that stop
and restart the broker. The machine's shared broker is never touched.

Needs the ``rabbitmq-server`` package (Debian's, or any install that has ``rabbitmq-server``
and ``rabbitmqctl`` on PATH); ``PrivateRabbit.available()`` says whether it is there. Run as
root, the server script drops to the ``rabbitmq`` user, so the folder is handed to it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from common.testing.stack import free_port

__all__ = ["PrivateRabbit"]


class PrivateRabbit:
    def __init__(self, base: Path | None = None) -> None:
        self.dir = Path(base or tempfile.mkdtemp(prefix="mlc-rabbit-"))
        self.node = f"mlc-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("rabbitmq-server") and shutil.which("rabbitmqctl"))

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
        }

    def _prepare(self) -> None:
        (self.dir / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.dir / "log").mkdir(parents=True, exist_ok=True)
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text(
            f"loopback_users = none\nlisteners.tcp.default = 127.0.0.1:{self.port}\n"
        )
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("rabbitmq")
            except KeyError:
                return
            for path in [self.dir, *self.dir.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)

    def start(self, timeout: float = 90) -> PrivateRabbit:
        """Start the node and wait until it answers. Its ports were free when they were picked,
        not necessarily now (a process started meanwhile may hold one): a node that exits
        because a port is taken is started again on new ports, twice at most."""
        for _ in range(2):
            if self._start(timeout):
                return self
            self.port, self.dist_port = free_port(), free_port()
        if not self._start(timeout):
            raise RuntimeError(f"private RabbitMQ exited: {self._output_tail()}")
        return self

    def _start(self, timeout: float) -> bool:
        """True once the node answers; False when it exited because a port was taken."""
        self._prepare()
        with open(self.dir / "server.out", "ab") as log:
            self._process = subprocess.Popen(
                ["rabbitmq-server"], env=self._env(), stdout=log, stderr=log, cwd=self.dir
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                tail = self._output_tail()
                if "eaddrinuse" in tail.lower():
                    return False
                # the folder may be gone by the time someone reads it: the cause goes along
                raise RuntimeError(f"private RabbitMQ exited: {tail}")
            if _answers(self.port) and self._ctl("await_startup", "-t", "5") == 0:
                return True
            time.sleep(0.25)
        raise RuntimeError(f"private RabbitMQ did not start in {timeout}s ({self.dir})")

    def _output_tail(self, lines: int = 15) -> str:
        try:
            text = (self.dir / "server.out").read_text(errors="replace")
        except OSError:
            return "(no server.out)"
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        if self._process is None:
            return
        self._ctl("stop")
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _ctl(self, *args: str) -> int:
        return subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args],
            env=self._env(),
            capture_output=True,
            timeout=60,
        ).returncode


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0
