"""Finding (or starting) the broker and database a test session runs against.

Order: the services at ``MLC_AMQP_URL`` / ``MLC_DATABASE_URL`` (defaults: 127.0.0.1) when they
answer; otherwise containers through testcontainers when a Docker engine answers; otherwise the
session stops with one line naming what to start. Each session then gets its own RabbitMQ vhost
(management API or ``rabbitmqctl``, whichever the machine has) and its own database.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import ExitStack
from dataclasses import dataclass

import aio_pika
import asyncpg

__all__ = [
    "Infra",
    "InfraUnavailable",
    "amqp_answers",
    "db_answers",
    "drop_database",
    "find_infra",
    "fresh_database",
]

DEFAULT_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/postgres"


class InfraUnavailable(RuntimeError):
    """Neither a reachable service nor a Docker engine: the message says what to start."""


@dataclass
class Infra:
    amqp_base: str  # URL with the default vhost
    database_base: str  # URL of an admin database on the server
    management_url: str | None  # http://user:pass@host:15672 when the management API answers


async def amqp_answers(url: str) -> bool:
    try:
        connection = await asyncio.wait_for(aio_pika.connect(url), timeout=5)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError):
        return False
    await connection.close()
    return True


async def db_answers(url: str) -> bool:
    try:
        connection = await asyncio.wait_for(asyncpg.connect(url), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


def _management_url(amqp_url: str, port: int = 15672) -> str | None:
    parts = urllib.parse.urlsplit(amqp_url)
    user, password = parts.username or "guest", parts.password or "guest"
    url = f"http://{parts.hostname}:{port}"
    request = urllib.request.Request(f"{url}/api/overview", headers=_auth(user, password))
    try:
        with urllib.request.urlopen(request, timeout=2):
            return f"http://{user}:{password}@{parts.hostname}:{port}"
    except (urllib.error.URLError, OSError):
        return None


def _auth(user: str, password: str) -> dict[str, str]:
    import base64

    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # any failure means "no usable engine": docker-py raises many kinds
        return False
    return True


async def find_infra(stack: ExitStack) -> Infra:
    """Locate the broker and database, starting containers when needed (closed by ``stack``)."""
    amqp = os.environ.get("MLC_AMQP_URL", DEFAULT_AMQP)
    database = os.environ.get("MLC_DATABASE_URL", DEFAULT_DB)
    database_admin = database.rsplit("/", 1)[0] + "/postgres"
    amqp_up, db_up = await asyncio.gather(amqp_answers(amqp), db_answers(database_admin))
    if amqp_up and db_up:
        return Infra(amqp, database_admin, _management_url(amqp))
    if not _docker_available():
        missing = [
            name
            for name, up in (
                ("RabbitMQ at " + _safe(amqp), amqp_up),
                ("PostgreSQL at " + _safe(database_admin), db_up),
            )
            if not up
        ]
        raise InfraUnavailable(
            f"cannot reach {' and '.join(missing)} and no Docker engine answers: start them "
            "with `make services` (local packages) or point MLC_AMQP_URL / MLC_DATABASE_URL at them"
        )
    from testcontainers.postgres import PostgresContainer
    from testcontainers.rabbitmq import RabbitMqContainer

    if not amqp_up:
        rabbit = stack.enter_context(RabbitMqContainer("rabbitmq:3.13-management"))
        host, port = rabbit.get_container_host_ip(), rabbit.get_exposed_port(5672)
        amqp = f"amqp://guest:guest@{host}:{port}/"
        mgmt_port = int(rabbit.get_exposed_port(15672))
    if not db_up:
        postgres = stack.enter_context(PostgresContainer("postgres:15", driver=None))
        database_admin = postgres.get_connection_url().replace("postgresql://", "postgresql://", 1)
        database_admin = database_admin.rsplit("/", 1)[0] + "/postgres"
    management = _management_url(amqp, mgmt_port) if not amqp_up else _management_url(amqp)
    return Infra(amqp, database_admin, management)


def _safe(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def create_vhost(infra: Infra, name: str) -> str:
    """Create vhost ``name`` with full rights for the URL's user; return its AMQP URL."""
    parts = urllib.parse.urlsplit(infra.amqp_base)
    user = parts.username or "guest"
    if infra.management_url:
        _management(infra.management_url, "PUT", f"/api/vhosts/{name}", {})
        _management(
            infra.management_url,
            "PUT",
            f"/api/permissions/{name}/{user}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )
    elif shutil.which("rabbitmqctl"):
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True)
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", name, user, ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
    else:
        raise InfraUnavailable(
            "cannot create a RabbitMQ vhost: enable the management plugin "
            "(`rabbitmq-plugins enable rabbitmq_management`) or run where rabbitmqctl works"
        )
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(name, safe="")))


def delete_vhost(infra: Infra, name: str) -> None:
    if infra.management_url:
        _management(infra.management_url, "DELETE", f"/api/vhosts/{name}", None)
    else:
        subprocess.run(
            ["rabbitmqctl", "-q", "delete_vhost", name], check=False, capture_output=True
        )


def _management(base: str, method: str, path: str, body: object) -> None:
    parts = urllib.parse.urlsplit(base)
    url = f"{parts.scheme}://{parts.hostname}:{parts.port}{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers=_auth(parts.username or "", parts.password or "")
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


async def fresh_database(infra: Infra, name: str) -> str:
    """(Re)create database ``name`` on the server and return its URL."""
    admin = await asyncpg.connect(infra.database_base)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return infra.database_base.rsplit("/", 1)[0] + "/" + name


async def drop_database(infra: Infra, name: str) -> None:
    admin = await asyncpg.connect(infra.database_base)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
