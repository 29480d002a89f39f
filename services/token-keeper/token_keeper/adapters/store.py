"""PostgresConnectionStore over schema ``tokens``: sealed secrets, one refresher at a time."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
from pydantic import SecretStr

from common.contracts import ChannelCredentials
from common.crypto import InvalidToken, Sealer
from common.errors import PermanentError
from token_keeper.ports import Connection, TokenPair

__all__ = ["ConnectionSummary", "PostgresConnectionStore", "fingerprint"]

_SELECT = "SELECT * FROM tokens.connections WHERE id = $1"

#: A connection's own channel settings, each with whether it is stored sealed.
CHANNEL_COLUMNS = {
    "twilio_account_sid": False,
    "twilio_auth_token": True,
    "twilio_messaging_service_sid": False,
    "sendgrid_api_key": True,
    "sendgrid_webhook_public_key": False,
}
#: Who a connection's calls and email come from (None: the install's sender); none is secret.
SENDER_COLUMNS = ("twilio_voice_from", "email_from", "email_from_name", "email_reply_to")


@dataclass(frozen=True)
class ConnectionSummary:
    """A connection without its secrets: safe to list and log."""

    id: str
    base_url: str
    status: str
    division: int
    divisions: list[int]
    refreshed_at: datetime | None
    refresh_count: int
    connected_at: datetime | None


def fingerprint(access_token: str) -> str:
    """A short, non-reversible name for a token, safe to pass around and log."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:16]


class _Session:
    def __init__(
        self, store: PostgresConnectionStore, db: asyncpg.Connection, row: Connection | None
    ) -> None:
        self._store, self._db, self.row = store, db, row

    async def save(self, pair: TokenPair, now: datetime) -> Connection:
        if self.row is None:
            raise LookupError("cannot save tokens of a connection that does not exist")
        sealer = self._store.sealer
        record = await self._db.fetchrow(
            """UPDATE tokens.connections SET refresh_token_sealed = $2, access_token_sealed = $3,
                   access_fingerprint = $4, access_expires_at = $5, refreshed_at = $6,
                   refresh_count = refresh_count + 1, status = 'active', status_reason = NULL,
                   updated_at = now()
               WHERE id = $1 RETURNING *""",
            self.row.id,
            sealer.seal(pair.refresh_token),
            sealer.seal(pair.access_token),
            fingerprint(pair.access_token),
            now + timedelta(seconds=pair.expires_in),
            now,
        )
        self.row = self._store.open_row(record)
        return self.row


class PostgresConnectionStore:
    def __init__(self, db: asyncpg.Pool, sealer: Sealer) -> None:
        self.db = db
        self.sealer = sealer

    def open_row(self, record: asyncpg.Record) -> Connection:
        try:
            return self._open_row(record)
        except InvalidToken as exc:
            raise PermanentError(
                f"connection {record['id']!r} was sealed with a key MLC_SECRET_KEY no longer "
                "lists: add the old key after the new one",
                code="bad_secret_key",
            ) from exc

    def _open_row(self, record: asyncpg.Record) -> Connection:
        sealed_access = record["access_token_sealed"]
        return Connection(
            id=record["id"],
            base_url=record["base_url"],
            client_id=record["client_id"],
            client_secret=self.sealer.open(record["client_secret_sealed"]),
            webhook_secret=self.sealer.open(record["webhook_secret_sealed"]),
            division=record["division"],
            refresh_token=self.sealer.open(record["refresh_token_sealed"]),
            access_token=self.sealer.open(sealed_access) if sealed_access else None,
            access_fingerprint=record["access_fingerprint"],
            access_expires_at=record["access_expires_at"],
            refreshed_at=record["refreshed_at"],
            status=record["status"],
            divisions=tuple(record["divisions"] or (record["division"],)),
        )

    async def unopenable(self) -> str | None:
        """None when ``MLC_SECRET_KEY`` opens every connection's sealed secrets; else one line
        naming the first it does not open (a wrong key, or the sealing key dropped before
        ``mlc-token-keeper reseal``). Every RPC of such a connection would fail, so token-keeper
        does not start, and is not ready, on it."""
        for record in await self.db.fetch("SELECT * FROM tokens.connections ORDER BY id"):
            try:
                self._open_row(record)
            except InvalidToken:
                return (
                    f"MLC_SECRET_KEY does not open the sealed secrets of connection "
                    f"{record['id']!r}: a wrong key, or the key they were sealed with was "
                    "dropped before `mlc-token-keeper reseal` (list it after the new one)"
                )
        return None

    async def get(self, connection_id: str) -> Connection | None:
        record = await self.db.fetchrow(_SELECT, connection_id)
        return self.open_row(record) if record else None

    @asynccontextmanager
    async def refresh_lock(self, connection_id: str) -> AsyncIterator[_Session]:
        # A transaction-scoped advisory lock: every replica serialises here, and the lock is
        # released only after the new pair is committed.
        async with self.db.acquire() as db, db.transaction():
            await db.execute(
                "SELECT pg_advisory_xact_lock(hashtext('tokens:' || $1))", connection_id
            )
            record = await db.fetchrow(_SELECT, connection_id)
            yield _Session(self, db, self.open_row(record) if record else None)

    async def active(self) -> list[tuple[str, list[int]]]:
        rows = await self.db.fetch(
            "SELECT id, division, divisions FROM tokens.connections "
            "WHERE status = 'active' ORDER BY id"
        )
        return [(r["id"], list(r["divisions"] or [r["division"]])) for r in rows]

    async def summaries(self) -> list[ConnectionSummary]:
        rows = await self.db.fetch(
            "SELECT id, base_url, status, division, divisions, refreshed_at, refresh_count, "
            "connected_at FROM tokens.connections ORDER BY id"
        )
        return [ConnectionSummary(**dict(r)) for r in rows]

    async def connect(
        self,
        *,
        id: str,
        base_url: str,
        client_id: str,
        client_secret: str,
        webhook_secret: str,
        divisions: list[int],
        pair: TokenPair,
        now: datetime,
    ) -> None:
        """Store a freshly consented connection (new, or repairing a broken chain), under the
        same lock as refreshes so a running token-keeper never races it."""
        seal = self.sealer.seal
        async with self.db.acquire() as db, db.transaction():
            await db.execute("SELECT pg_advisory_xact_lock(hashtext('tokens:' || $1))", id)
            await db.execute(
                """INSERT INTO tokens.connections AS c (id, base_url, client_id,
                       client_secret_sealed, webhook_secret_sealed, division, divisions,
                       refresh_token_sealed, access_token_sealed, access_fingerprint,
                       access_expires_at, refreshed_at, connected_at, status)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, 'active')
                   ON CONFLICT (id) DO UPDATE SET base_url = EXCLUDED.base_url,
                       client_id = EXCLUDED.client_id,
                       client_secret_sealed = EXCLUDED.client_secret_sealed,
                       webhook_secret_sealed = EXCLUDED.webhook_secret_sealed,
                       division = EXCLUDED.division, divisions = EXCLUDED.divisions,
                       refresh_token_sealed = EXCLUDED.refresh_token_sealed,
                       access_token_sealed = EXCLUDED.access_token_sealed,
                       access_fingerprint = EXCLUDED.access_fingerprint,
                       access_expires_at = EXCLUDED.access_expires_at,
                       refreshed_at = EXCLUDED.refreshed_at,
                       connected_at = EXCLUDED.connected_at, status = 'active',
                       status_reason = NULL, updated_at = now()""",
                id,
                base_url,
                client_id,
                seal(client_secret),
                seal(webhook_secret),
                divisions[0],
                divisions,
                seal(pair.refresh_token),
                seal(pair.access_token),
                fingerprint(pair.access_token),
                now + timedelta(seconds=pair.expires_in),
                now,
            )

    async def reseal(self) -> int:
        """Re-seal every secret under the newest key (after prepending a key to
        MLC_SECRET_KEY); returns the number of connections. Old keys may be dropped after."""
        columns = (
            "client_secret_sealed",
            "webhook_secret_sealed",
            "refresh_token_sealed",
            "access_token_sealed",
            "twilio_auth_token_sealed",
            "sendgrid_api_key_sealed",
        )
        async with self.db.acquire() as db, db.transaction():
            rows = await db.fetch(
                "SELECT id, client_secret_sealed, webhook_secret_sealed, refresh_token_sealed, "
                "access_token_sealed, twilio_auth_token_sealed, sendgrid_api_key_sealed "
                "FROM tokens.connections FOR UPDATE"
            )
            for row in rows:
                values = [self.sealer.rotate(row[c]) if row[c] else None for c in columns]
                await db.execute(
                    "UPDATE tokens.connections SET client_secret_sealed = $2, "
                    "webhook_secret_sealed = $3, refresh_token_sealed = $4, "
                    "access_token_sealed = $5, twilio_auth_token_sealed = $6, "
                    "sendgrid_api_key_sealed = $7, updated_at = now() WHERE id = $1",
                    row["id"],
                    *values,
                )
        return len(rows)

    async def set_channel_credentials(
        self,
        connection_id: str,
        *,
        twilio_account_sid: str | None,
        twilio_auth_token: str | None,
        twilio_messaging_service_sid: str | None,
        sendgrid_api_key: str | None,
        sendgrid_webhook_public_key: str | None = None,
    ) -> bool:
        """Give the connection its own Twilio/SendGrid accounts (None: the default account)."""
        seal = self.sealer.seal
        status = await self.db.execute(
            """UPDATE tokens.connections SET twilio_account_sid = $2,
                   twilio_auth_token_sealed = $3, twilio_messaging_service_sid = $4,
                   sendgrid_api_key_sealed = $5, sendgrid_webhook_public_key = $6,
                   updated_at = now() WHERE id = $1""",
            connection_id,
            twilio_account_sid,
            seal(twilio_auth_token) if twilio_auth_token else None,
            twilio_messaging_service_sid,
            seal(sendgrid_api_key) if sendgrid_api_key else None,
            sendgrid_webhook_public_key,
        )
        return bool(status == "UPDATE 1")

    async def change_channel_credentials(
        self, connection_id: str, changes: dict[str, str | None]
    ) -> bool:
        """Change only the channel settings named in ``changes`` (None: back to the install's
        default); the others keep their value. Keys: ``CHANNEL_COLUMNS``."""
        unknown = set(changes) - set(CHANNEL_COLUMNS)
        if unknown:
            raise ValueError(f"not channel settings: {sorted(unknown)}")
        names = list(changes)
        values = [
            self.sealer.seal(v) if CHANNEL_COLUMNS[n] and v else v for n, v in changes.items()
        ]
        columns = [n + "_sealed" if CHANNEL_COLUMNS[n] else n for n in names]
        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=2))
        # the column names come from CHANNEL_COLUMNS only; every value is a parameter
        sql = f"UPDATE tokens.connections SET {assignments}, updated_at = now() WHERE id = $1"  # noqa: S608
        status = await self.db.execute(sql, connection_id, *values)
        return bool(status == "UPDATE 1")

    async def change_senders(self, connection_id: str, changes: dict[str, str | None]) -> bool:
        """Change only the senders named in ``changes`` (None: back to the install's sender);
        the others keep their value. Keys: ``SENDER_COLUMNS``."""
        unknown = set(changes) - set(SENDER_COLUMNS)
        if unknown or not changes:
            raise ValueError(f"not sender settings: {sorted(unknown) or 'none given'}")
        assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(changes, start=2))
        # the column names come from SENDER_COLUMNS only; every value is a parameter
        sql = f"UPDATE tokens.connections SET {assignments}, updated_at = now() WHERE id = $1"  # noqa: S608
        status = await self.db.execute(sql, connection_id, *changes.values())
        return bool(status == "UPDATE 1")

    async def channel_credentials(self, connection_id: str) -> ChannelCredentials | None:
        row = await self.db.fetchrow(
            "SELECT twilio_account_sid, twilio_auth_token_sealed, twilio_messaging_service_sid, "
            "sendgrid_api_key_sealed, sendgrid_webhook_public_key, twilio_voice_from, "
            "email_from, email_from_name, email_reply_to "
            "FROM tokens.connections WHERE id = $1",
            connection_id,
        )
        if row is None:
            return None
        token, key = row["twilio_auth_token_sealed"], row["sendgrid_api_key_sealed"]
        return ChannelCredentials(
            connection_id=connection_id,
            twilio_account_sid=row["twilio_account_sid"],
            twilio_auth_token=SecretStr(self.sealer.open(token)) if token else None,
            twilio_messaging_service_sid=row["twilio_messaging_service_sid"],
            sendgrid_api_key=SecretStr(self.sealer.open(key)) if key else None,
            sendgrid_webhook_public_key=row["sendgrid_webhook_public_key"],
            twilio_voice_from=row["twilio_voice_from"],
            email_from=row["email_from"],
            email_from_name=row["email_from_name"],
            email_reply_to=row["email_reply_to"],
        )

    async def mark_needs_reconnect(self, connection_id: str, reason: str) -> None:
        await self.db.execute(
            "UPDATE tokens.connections SET status = 'needs_reconnect', status_reason = $2, "
            "updated_at = now() WHERE id = $1",
            connection_id,
            reason,
        )

    async def ensure(
        self,
        *,
        id: str,
        base_url: str,
        client_id: str,
        client_secret: str,
        webhook_secret: str,
        division: int,
        refresh_token: str,
    ) -> bool:
        """Insert a connection unless it exists: a restart must never put back a refresh token
        that has since rotated. Returns True when it inserted."""
        status = await self.db.execute(
            """INSERT INTO tokens.connections (id, base_url, client_id, client_secret_sealed,
                   webhook_secret_sealed, division, divisions, refresh_token_sealed)
               VALUES ($1, $2, $3, $4, $5, $6, ARRAY[$6::integer], $7)
               ON CONFLICT (id) DO NOTHING""",
            id,
            base_url,
            client_id,
            self.sealer.seal(client_secret),
            self.sealer.seal(webhook_secret),
            division,
            self.sealer.seal(refresh_token),
        )
        return bool(status == "INSERT 0 1")
