"""Reconciliation takes its connections and divisions from token-keeper (``connections.list``),
answered only to the enricher: connections that work, each with every division it serves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from common import db, topology
from common.contracts import ConnectionsList
from common.crypto import Sealer, generate_key
from common.testing.infra import unique
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.handlers import list_connections

pytestmark = pytest.mark.integration

SECRETS = {"client_secret": "cs", "webhook_secret": "ws", "refresh_token": "rt"}


@pytest_asyncio.fixture
async def pool(private_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with db.pool(private_database_url) as created:
        await db.migrate(created, "tokens", "token_keeper")
        yield created


async def test_only_working_connections_are_listed_with_every_division(pool: asyncpg.Pool):
    store = PostgresConnectionStore(pool, Sealer(generate_key()))
    one, two, broken = unique("bakkerij"), unique("groothandel"), unique("kapot")
    for connection_id, division in ((one, 11), (two, 21), (broken, 31)):
        await store.ensure(
            id=connection_id, base_url="http://exact", client_id="c", division=division, **SECRETS
        )
    await pool.execute("UPDATE tokens.connections SET divisions = $2 WHERE id = $1", two, [21, 22])
    await store.mark_needs_reconnect(broken, "Old refresh token used")

    reply = await list_connections(ConnectionsList(), store=store)
    listed = {c.connection_id: c.divisions for c in reply.connections}

    assert listed[one] == [11]
    assert listed[two] == [21, 22]
    assert broken not in listed


def test_only_the_enricher_may_ask_for_the_connections():
    assert topology.RPC_CALLERS["connections.list"] == ("enricher",)
    assert ConnectionsList.routing_key == "connections.list"
