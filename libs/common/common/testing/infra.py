"""Finding (or starting) the broker and database a test session runs against.

Order: the services at ``MLC_AMQP_URL`` / ``MLC_DATABASE_URL`` (defaults: 127.0.0.1) when they
answer; otherwise containers through testcontainers when a Docker engine answers; otherwise the
session stops with one line naming what to start. Each session then gets its own RabbitMQ vhost
(management API or ``rabbitmqctl``, whichever the machine has) and its own database.

A vhost starts as a production broker does: with the topology of ``deploy/rabbitmq/
definitions.json`` loaded (``common.topology.definitions``), full rights for the test's own
user (guest on a developer machine), and, for a stack of processes, one user per service with
that service's permissions only (``create_service_users``), deleted again with the vhost.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import aio_pika
import asyncpg

from common import topology

__all__ = [
    "BrokerAdmin",
    "Infra",
    "InfraUnavailable",
    "ServiceUsers",
    "amqp_answers",
    "amqp_login",
    "create_service_users",
    "create_vhost",
    "db_answers",
    "delete_service_users",
    "delete_vhost",
    "drop_database",
    "find_infra",
    "fresh_database",
    "topology_definitions",
    "unique",
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

    def admin(self) -> BrokerAdmin:
        return BrokerAdmin(self.management_url)


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


class BrokerAdmin:
    """Loads definitions into the broker and deletes vhosts and users: through the management
    API when it answers (``management_url``), else ``rabbitmqctl`` on ``node`` (default: the
    machine's own node)."""

    def __init__(self, management_url: str | None = None, *, node: str | None = None) -> None:
        self.management_url = management_url
        self.node = node

    @classmethod
    def for_url(cls, amqp_url: str) -> BrokerAdmin:
        """The admin of the broker at ``amqp_url``, as its user (who must be an administrator)."""
        return cls(_management_url(amqp_url))

    def import_definitions(self, document: dict[str, Any]) -> None:
        """Create (or update) what ``document`` defines; what it does not name is left alone."""
        if self.management_url:
            _management(self.management_url, "POST", "/api/definitions", document)
        else:
            self._ctl(["import_definitions"], stdin=json.dumps(document))

    def delete_vhost(self, name: str) -> None:
        if self.management_url:
            _management(self.management_url, "DELETE", f"/api/vhosts/{_quote(name)}", None)
        else:
            self._ctl(["delete_vhost", name], check=False)

    def delete_users(self, names: list[str]) -> None:
        """Delete the users ``names`` (in parallel: each ``rabbitmqctl`` takes most of a second)."""
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            list(pool.map(self._delete_user, names))

    def _delete_user(self, name: str) -> None:
        if self.management_url:
            _management(self.management_url, "DELETE", f"/api/users/{_quote(name)}", None)
        else:
            self._ctl(["delete_user", name], check=False)

    def _ctl(self, args: list[str], *, stdin: str | None = None, check: bool = True) -> None:
        if not shutil.which("rabbitmqctl"):
            raise InfraUnavailable(
                "cannot administer RabbitMQ: enable the management plugin "
                "(`rabbitmq-plugins enable rabbitmq_management`) or run where rabbitmqctl works"
            )
        node = ["-n", self.node] if self.node else []
        done = subprocess.run(
            ["rabbitmqctl", *node, "-q", *args], input=stdin, capture_output=True, text=True
        )
        if check and done.returncode != 0:
            # the arguments, never the input: it may carry password hashes
            raise InfraUnavailable(f"rabbitmqctl {args[0]} failed: {done.stderr.strip()[:300]}")


def _quote(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def amqp_login(url: str) -> str:
    """The user an AMQP URL logs in as (aio-pika's default ``guest`` when it names none)."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).username or "guest")


def _vhost_of(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path[1:]) or "/"


def _with(
    url: str, *, vhost: str | None = None, user: str | None = None, password: str = ""
) -> str:
    """``url`` on another vhost and/or as another user."""
    parts = urllib.parse.urlsplit(url)
    if vhost is not None:
        parts = parts._replace(path="/" + _quote(vhost))
    if user is not None:
        netloc = f"{_quote(user)}:{_quote(password)}@{parts.hostname}:{parts.port or 5672}"
        parts = parts._replace(netloc=netloc)
    return urllib.parse.urlunsplit(parts)


def topology_definitions(vhost: str, owner: str) -> dict[str, Any]:
    """``vhost`` with the production topology and full rights for ``owner``, but none of the
    production users (``mlc-<service>``): a test vhost gets users of its own."""
    document = topology.definitions(vhost)
    for key in ("users", "permissions", "topic_permissions"):
        document.pop(key)
    document["permissions"] = [
        {"user": owner, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
    ]
    return document


def create_vhost(infra: Infra, name: str) -> str:
    """Create vhost ``name`` with the topology loaded and full rights for the URL's user;
    return its AMQP URL."""
    infra.admin().import_definitions(topology_definitions(name, amqp_login(infra.amqp_base)))
    return _with(infra.amqp_base, vhost=name)


def delete_vhost(infra: Infra, name: str) -> None:
    """Delete vhost ``name`` and the service users this process created for it."""
    admin = infra.admin()
    admin.delete_vhost(name)
    admin.delete_users(_SERVICE_USERS.pop(name, []))


#: vhost -> the service users created for it in this process (``delete_vhost`` removes them).
_SERVICE_USERS: dict[str, list[str]] = {}


@dataclass(frozen=True)
class ServiceUsers:
    """One AMQP user per service on one vhost: its name and its URL (with its password)."""

    vhost: str
    users: dict[str, str]
    urls: dict[str, str]


def create_service_users(
    admin: BrokerAdmin, amqp_url: str, *, prefix: str | None = None
) -> ServiceUsers:
    """A user per service on ``amqp_url``'s vhost, named ``<prefix>-<service>`` (default
    prefix: the vhost's name), with a random password and exactly the permissions production
    gives that service (``topology.permissions``, ``topology.topic_permissions``)."""
    vhost = _vhost_of(amqp_url)
    prefix = prefix or (unique("mlc-stack") if vhost == "/" else vhost)
    users = {service: f"{prefix}-{service}" for service in topology.SERVICES}
    passwords = {service: secrets.token_urlsafe(24) for service in topology.SERVICES}
    document = topology.access_definitions(vhost, users)
    hashes = {users[s]: topology.password_hash(passwords[s]) for s in users}
    for entry in document["users"]:
        entry["password_hash"] = hashes[entry["name"]]
    _SERVICE_USERS.setdefault(vhost, []).extend(users.values())
    admin.import_definitions(document)
    urls = {s: _with(amqp_url, user=users[s], password=passwords[s]) for s in users}
    return ServiceUsers(vhost, users, urls)


def delete_service_users(admin: BrokerAdmin, created: ServiceUsers) -> None:
    """Delete users ``create_service_users`` made (a vhost's deletion leaves its users)."""
    admin.delete_users(list(created.users.values()))
    left = _SERVICE_USERS.get(created.vhost, [])
    _SERVICE_USERS[created.vhost] = [u for u in left if u not in created.users.values()]


def _management(base: str, method: str, path: str, body: object) -> None:
    parts = urllib.parse.urlsplit(base)
    url = f"{parts.scheme}://{parts.hostname}:{parts.port}{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers=_auth(parts.username or "", parts.password or "")
    )
    try:
        with urllib.request.urlopen(request, timeout=30):
            pass
    except urllib.error.HTTPError as exc:
        if not (method == "DELETE" and exc.code == 404):  # already gone
            raise


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
