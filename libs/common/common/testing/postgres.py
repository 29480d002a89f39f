"""A private PostgreSQL cluster in a temporary folder, on a free loopback port, for tests and
fault runs that restart the database. The machine's shared server is never touched.

Needs PostgreSQL's server binaries (``initdb``, ``pg_ctl``; Debian keeps them in
``/usr/lib/postgresql/<version>/bin``). PostgreSQL refuses to run as root, so as root the
cluster belongs to the ``postgres`` user and every command runs as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from common.testing.stack import free_port

__all__ = ["PrivatePostgres"]


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    return Path(versions[0]).parent if versions else None


class PrivatePostgres:
    """``password``: connections over TCP must give it (SCRAM), as a production server asks;
    unset, every connection is trusted."""

    def __init__(self, base: Path | None = None, *, password: str | None = None) -> None:
        self.dir = Path(base or tempfile.mkdtemp(prefix="mlc-postgres-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.password = password
        self._bin = _bin_dir()

    @staticmethod
    def available() -> bool:
        return _bin_dir() is not None

    def url(self, database: str = "postgres") -> str:
        login = f"postgres:{self.password}" if self.password else "postgres"
        return f"postgresql://{login}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        if self._bin is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        command = [str(self._bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120, cwd=self.dir)

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
            if owner is not None:
                os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            auth = ["-A", "trust"]
            if self.password is not None:
                secret = self.dir / "pwfile"
                secret.write_text(self.password + "\n")
                if owner is not None:
                    os.chown(secret, owner.pw_uid, owner.pw_gid)
                auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={secret}"]
            self._run("initdb", "-D", str(self.data), "-U", "postgres", *auth)
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w",
            "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
