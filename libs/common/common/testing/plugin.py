"""pytest plugin for the whole suite (``-p common.testing.plugin``).

Session fixtures give each test run its own RabbitMQ vhost (``amqp_url``) and its own database
(``database_url``), created here and dropped at the end, so a run never sees another run's or
the demo's messages. Neither is touched by tests that do not ask for them.

The suite runs under the simulator profile (``MLC_PROFILE=simulator``, set at start unless the
environment sets a profile): every settings object a test builds takes the simulators'
credentials, as the simulators it talks to do. A test of the production profile says so.

Services wired in-process connect as the test's own user (guest on a developer machine), so
for the session ``MLC_RPC_USERS`` names that user for every service: a token-keeper started
in-process answers them. Production's default stays strict (``mlc-<service>`` only), and a
stack of processes (``PipelineStack``) runs each service as its own user and says so itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import pytest
import pytest_asyncio

from common import topology
from common.testing.infra import (
    Infra,
    InfraUnavailable,
    amqp_login,
    create_vhost,
    delete_vhost,
    drop_database,
    find_infra,
    fresh_database,
    unique,
)


def pytest_configure(config: pytest.Config) -> None:
    """The simulator profile for every settings object of the run (see the docstring)."""
    os.environ.setdefault("MLC_PROFILE", "simulator")


@pytest.fixture(scope="session")
def _infra_stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest_asyncio.fixture(scope="session")
async def infra(_infra_stack: ExitStack) -> Infra:
    try:
        found = await find_infra(_infra_stack)
    except InfraUnavailable as exc:
        pytest.exit(f"ml-connector tests need RabbitMQ and PostgreSQL: {exc}", returncode=3)
    _answer_in_process_services(_infra_stack, amqp_login(found.amqp_base))
    return found


def _answer_in_process_services(stack: ExitStack, user: str) -> None:
    """``MLC_RPC_USERS`` naming ``user`` for every service, for this session only (unless the
    environment already says whom to answer)."""
    if "MLC_RPC_USERS" in os.environ:
        return
    os.environ["MLC_RPC_USERS"] = json.dumps(dict.fromkeys(topology.SERVICES, user))
    stack.callback(os.environ.pop, "MLC_RPC_USERS", None)


@pytest.fixture(scope="session")
def amqp_url(infra: Infra) -> Iterator[str]:
    """A fresh vhost for this session, deleted at the end."""
    name = unique("mlc-test")
    try:
        url = create_vhost(infra, name)
    except InfraUnavailable as exc:
        pytest.exit(f"ml-connector tests: {exc}", returncode=3)
    yield url
    delete_vhost(infra, name)


@pytest_asyncio.fixture(scope="session")
async def database_url(infra: Infra) -> AsyncIterator[str]:
    """A fresh database for this session, dropped at the end."""
    name = unique("mlc_test").replace("-", "_")
    yield await fresh_database(infra, name)
    await drop_database(infra, name)


@pytest_asyncio.fixture(scope="module")
async def module_database_url(infra: Infra) -> AsyncIterator[str]:
    """A database of this test module's own: for a module whose token-keeper seals with a key
    of its own (token-keeper does not start on secrets another key sealed)."""
    name = unique("mlc_test").replace("-", "_")
    yield await fresh_database(infra, name)
    await drop_database(infra, name)


@pytest.fixture
def private_amqp_url(infra: Infra) -> Iterator[str]:
    """A vhost of this test's own, for tests whose consumers must not meet the pipeline's."""
    name = unique("mlc-test")
    url = create_vhost(infra, name)
    yield url
    delete_vhost(infra, name)


@pytest_asyncio.fixture
async def private_database_url(infra: Infra) -> AsyncIterator[str]:
    """A database of this test's own, for tests that read or rewrite a whole table."""
    name = unique("mlc_test").replace("-", "_")
    yield await fresh_database(infra, name)
    await drop_database(infra, name)
