"""``mlc connections list``: region, divisions, token age and refresh-token expiry; no secret."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from common import db
from common.crypto import Sealer
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.cli.exact_api import region_of
from token_keeper.settings import Settings

__all__ = ["run"]

#: Exact lets an unused refresh token live this long.
REFRESH_TOKEN_LIFE = timedelta(days=30)


def _age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "never"
    seconds = int((now - since).total_seconds())
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


async def run(settings: Settings, args: argparse.Namespace, say: Callable[[str], None]) -> int:
    if settings.secret_key is None:
        raise SystemExit("MLC_SECRET_KEY is required")
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "tokens", "token_keeper")
        summaries = await PostgresConnectionStore(pool, Sealer(settings.secret_key)).summaries()
    if not summaries:
        say("no connections; run `mlc connect`")
        return 0
    now = datetime.now(UTC)
    say(
        f"{'connection':16} {'region':7} {'divisions':20} {'status':16} {'token age':10} "
        "refresh token expires"
    )
    for s in summaries:
        expires = (
            (s.refreshed_at + REFRESH_TOKEN_LIFE).date().isoformat() if s.refreshed_at else "-"
        )
        divisions = ",".join(map(str, s.divisions or [s.division]))
        say(
            f"{s.id:16} {region_of(s.base_url):7} {divisions:20} {s.status:16} "
            f"{_age(s.refreshed_at, now):10} {expires}"
        )
    return 0
