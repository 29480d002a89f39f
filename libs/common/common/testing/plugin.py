"""pytest plugin for the whole suite (``-p common.testing.plugin``).

Session fixtures give each test run its own RabbitMQ vhost (``amqp_url``) and its own database
(``database_url``), created here and dropped at the end, so a run never sees another run's or
the demo's messages. Neither is touched by tests that do not ask for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import pytest
import pytest_asyncio

from common.testing.infra import (
    Infra,
    InfraUnavailable,
    create_vhost,
    delete_vhost,
    drop_database,
    find_infra,
    fresh_database,
    unique,
)


@pytest.fixture(scope="session")
def _infra_stack() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest_asyncio.fixture(scope="session")
async def infra(_infra_stack: ExitStack) -> Infra:
    try:
        return await find_infra(_infra_stack)
    except InfraUnavailable as exc:
        pytest.exit(f"ml-connector tests need RabbitMQ and PostgreSQL: {exc}", returncode=3)


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
