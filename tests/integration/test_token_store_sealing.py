"""Secrets at rest: the raw tokens table holds no secret in clear, and a key rotation re-seals
every secret so the old key can be dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest
import pytest_asyncio

from common import db
from common.crypto import Sealer, generate_key
from common.testing.infra import unique
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.ports import TokenPair

pytestmark = pytest.mark.integration

SECRETS = {
    "client_secret": "client-secret-8c1e4b7a",
    "webhook_secret": "webhook-secret-2fQ9x",
    "refresh_token": "refresh-token-abc123",
}


@pytest_asyncio.fixture
async def pool(private_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with db.pool(private_database_url) as created:
        await db.migrate(created, "tokens", "token_keeper")
        yield created


async def raw_text(pool: asyncpg.Pool, connection_id: str) -> str:
    row = await pool.fetchrow("SELECT * FROM tokens.connections WHERE id = $1", connection_id)
    return " ".join(
        bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v)
        for v in row.values()
    )


async def test_the_raw_table_holds_no_secret_in_clear(pool: asyncpg.Pool) -> None:
    store = PostgresConnectionStore(pool, Sealer(generate_key()))
    connection_id = unique("sealed")
    await store.ensure(
        id=connection_id, base_url="http://exact", client_id="client", division=1, **SECRETS
    )
    async with store.refresh_lock(connection_id) as session:
        await session.save(
            TokenPair("access-token-xyz789", "refresh-token-def456", 600), datetime.now(UTC)
        )
    text = await raw_text(pool, connection_id)
    for secret in [*SECRETS.values(), "access-token-xyz789", "refresh-token-def456"]:
        assert secret not in text
    opened = await store.get(connection_id)
    assert opened is not None
    assert opened.refresh_token == "refresh-token-def456"
    assert opened.webhook_secret == SECRETS["webhook_secret"]


async def test_a_key_rotation_reseals_everything_so_the_old_key_can_go(pool: asyncpg.Pool) -> None:
    old, new = generate_key(), generate_key()
    connection_id = unique("rotated")
    await PostgresConnectionStore(pool, Sealer(old)).ensure(
        id=connection_id, base_url="http://exact", client_id="client", division=1, **SECRETS
    )
    assert await PostgresConnectionStore(pool, Sealer(f"{new},{old}")).reseal() >= 1
    rotated = await PostgresConnectionStore(pool, Sealer(new)).get(connection_id)
    assert rotated is not None
    assert rotated.client_secret == SECRETS["client_secret"]
    assert rotated.refresh_token == SECRETS["refresh_token"]
