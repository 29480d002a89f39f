"""The audit schema: the SQL migrations, then the one conversion SQL cannot do.

Migration 006 adds the hashed, masked and sealed columns; filling them from the rows written
before it needs the data key, which a SQL file does not have. ``migrate`` therefore converts
those rows here, once (recorded as version ``006_personal_data.py`` in
``audit.schema_migrations``, in one transaction with the conversion): each clear recipient
becomes its hash and masked form, each text is sealed, every stored provider form is
stripped (``PersonalData.strip``), and the clear ``recipient`` and ``content`` columns are
dropped. Inbound senders were always kept masked; they get no hash (erasure cannot match
them, and they name nobody).

Every start runs ``migrate``: the service (app.py) and the test fixtures alike.
"""

from __future__ import annotations

import zlib

import asyncpg

from auditor.personal import PersonalData
from common import db

__all__ = ["CONVERSION", "migrate"]

#: The version the conversion is recorded under.
CONVERSION = "006_personal_data.py"

#: Rows converted per round trip.
_BATCH = 500


async def migrate(pool: asyncpg.Pool, data: PersonalData) -> list[str]:
    """Apply the SQL migrations, then the conversion if it has not run. Returns the versions
    applied. Replicas starting together convert once: the migration lock is held."""
    applied = await db.migrate(pool, "audit", "auditor")
    lock = zlib.crc32(b"mlc-migrate:audit")
    async with pool.acquire() as connection:
        await connection.execute("SELECT pg_advisory_lock($1)", lock)
        try:
            if await _converted(connection):
                return applied
            async with connection.transaction():
                await _convert(connection, data)
                await connection.execute(
                    "INSERT INTO audit.schema_migrations (version) VALUES ($1)", CONVERSION
                )
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", lock)
    return [*applied, CONVERSION]


async def _converted(connection: asyncpg.Connection) -> bool:
    return bool(
        await connection.fetchval(
            "SELECT 1 FROM audit.schema_migrations WHERE version = $1", CONVERSION
        )
    )


async def _convert(connection: asyncpg.Connection, data: PersonalData) -> None:
    if await _has_clear_columns(connection):
        await _convert_notifications(connection, data)
        await connection.execute(
            "ALTER TABLE audit.notifications DROP COLUMN recipient, DROP COLUMN content"
        )
    await _strip_status_forms(connection, data)


async def _has_clear_columns(connection: asyncpg.Connection) -> bool:
    found = await connection.fetchval(
        """SELECT count(*) FROM information_schema.columns
           WHERE table_schema = 'audit' AND table_name = 'notifications'
             AND column_name IN ('recipient', 'content')"""
    )
    return bool(found == 2)


async def _convert_notifications(connection: asyncpg.Connection, data: PersonalData) -> None:
    """Hash and mask each clear recipient, seal each text (in batches: a cursor, not a list)."""
    batch: list[tuple[object, ...]] = []
    query = """SELECT notification_id, recipient, content FROM audit.notifications
               WHERE recipient IS NOT NULL OR content IS NOT NULL"""
    async for row in connection.cursor(query):
        recipient, content = row["recipient"], row["content"]
        batch.append(
            (
                row["notification_id"],
                data.hash(recipient) if recipient else None,
                data.mask(recipient) if recipient else None,
                data.seal(content) if content is not None else None,
            )
        )
        if len(batch) >= _BATCH:
            await _write_converted(connection, batch)
            batch = []
    await _write_converted(connection, batch)


async def _write_converted(connection: asyncpg.Connection, batch: list[tuple[object, ...]]) -> None:
    if batch:
        await connection.executemany(
            """UPDATE audit.notifications SET recipient_hash = $2, recipient_masked = $3,
                   content_sealed = $4 WHERE notification_id = $1""",
            batch,
        )


async def _strip_status_forms(connection: asyncpg.Connection, data: PersonalData) -> None:
    """Strip every provider form stored before 006 (To, From, Body, email...)."""
    batch: list[tuple[object, ...]] = []
    async for row in connection.cursor("SELECT id, raw FROM audit.status_events"):
        stripped = data.strip(row["raw"] or {})
        if stripped != row["raw"]:
            batch.append((row["id"], stripped))
        if len(batch) >= _BATCH:
            await _write_stripped(connection, batch)
            batch = []
    await _write_stripped(connection, batch)


async def _write_stripped(connection: asyncpg.Connection, batch: list[tuple[object, ...]]) -> None:
    if batch:
        await connection.executemany("UPDATE audit.status_events SET raw = $2 WHERE id = $1", batch)
