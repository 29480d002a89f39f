"""PostgreSQL: the asyncpg pool and the forward-only, per-schema migration runner.

Each service owns one schema and keeps numbered SQL files (``001_claims.sql``...) in its
package. ``migrate`` applies the ones not yet recorded in ``<schema>.schema_migrations``, each
in its own transaction, under an advisory lock so that replicas starting together do not race.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg
import orjson

from common.runtime import DependencyRefused, address, wait_for_dependency

__all__ = ["ensure_database", "migrate", "pool"]


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection released without asyncpg's reset query (``pg_advisory_unlock_all;
    CLOSE ALL; UNLISTEN *; RESET ALL``): one more round trip on every release, for session
    state no service keeps (its session-level advisory locks are released where taken, and
    nothing LISTENs, declares cursors or SETs). An open transaction is still rolled back."""

    def get_reset_query(self) -> str:
        return ""


def _json_text(value: Any) -> str:
    """JSON for a ``json``/``jsonb`` parameter. orjson: the grouped writes of every service
    pass their rows as one JSON document, and the standard library's encoder and decoder were
    several per cent of a service's CPU; keys that are not strings are written as strings,
    as the standard library does."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


async def _init_connection(connection: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(
            kind, encoder=_json_text, decoder=orjson.loads, schema="pg_catalog"
        )


@asynccontextmanager
async def pool(url: str, *, min_size: int = 1, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    """An asyncpg pool with JSON codecs, closed on exit. ``DependencyUnavailable`` when the
    database does not answer, ``DependencyRefused`` when it refuses the user or password."""
    try:
        created = await wait_for_dependency(
            "database",
            where=address(url),
            attempt=functools.partial(
                asyncpg.create_pool,
                url,
                min_size=min_size,
                max_size=max_size,
                init=_init_connection,
                connection_class=_Connection,
            ),
            retry_on=(OSError, ConnectionError, TimeoutError, asyncpg.CannotConnectNowError),
        )
    except asyncpg.InvalidAuthorizationSpecificationError as exc:  # InvalidPasswordError too
        raise _refused(url, exc) from None
    try:
        yield created
    finally:
        await created.close()


def _refused(url: str, exc: asyncpg.InvalidAuthorizationSpecificationError) -> DependencyRefused:
    """One line naming the database's address and the user, never the password: asyncpg's
    own message is the server's, which names the user only."""
    user = unquote(urlsplit(url).username or "") or "(the default user)"
    if isinstance(exc, asyncpg.InvalidPasswordError):
        why = "wrong password"
    else:  # an unknown role, a pg_hba.conf without an entry for this host or user...
        why = (str(exc).strip().splitlines() or ["not allowed"])[0][:200]
    return DependencyRefused(
        f"the database at {address(url)} refused user {user!r} ({why}); "
        "check the user and password in MLC_DATABASE_URL"
    )


async def ensure_database(url: str) -> bool:
    """Create the database named in ``url`` if it is missing. Returns True if it created it."""
    *base, name = url.rsplit("/", 1)
    name = name.split("?", 1)[0]
    admin = await asyncpg.connect(f"{base[0]}/postgres")
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await admin.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await admin.close()


async def migrate(db: asyncpg.Pool, schema: str, package: str) -> list[str]:
    """Apply ``package``'s ``migrations/*.sql`` to ``schema``. Returns the versions applied."""
    files = sorted(
        (
            f
            for f in resources.files(package).joinpath("migrations").iterdir()
            if f.name.endswith(".sql")
        ),
        key=lambda f: f.name,
    )
    applied: list[str] = []
    async with db.acquire() as connection:
        lock = zlib.crc32(f"mlc-migrate:{schema}".encode())
        await connection.execute("SELECT pg_advisory_lock($1)", lock)
        try:
            await connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await connection.execute(
                f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations '
                "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {
                r["version"]
                for r in await connection.fetch(f'SELECT version FROM "{schema}".schema_migrations')
            }
            for file in files:
                if file.name in done:
                    continue
                async with connection.transaction():
                    await connection.execute(f'SET LOCAL search_path TO "{schema}"')
                    await connection.execute(file.read_text())
                    await connection.execute(
                        f'INSERT INTO "{schema}".schema_migrations (version) VALUES ($1)',
                        file.name,
                    )
                applied.append(file.name)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", lock)
    return applied
