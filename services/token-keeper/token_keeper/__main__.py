"""``mlc-token-keeper``: hands out Exact access tokens and rotates them safely.

``mlc-token-keeper reseal`` re-seals every stored secret under the newest key of
``MLC_SECRET_KEY`` (rotation: prepend a new key, reseal, then drop the old key).
"""

from __future__ import annotations

import argparse
import asyncio
import functools

from common import db
from common.crypto import Sealer
from common.logging import configure_logging
from common.runtime import run_until_stopped
from token_keeper import app
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.settings import Settings


async def reseal(settings: Settings) -> int:
    if settings.secret_key is None:
        raise SystemExit("MLC_SECRET_KEY is required")
    async with db.pool(settings.database_url) as pool:
        await db.migrate(pool, "tokens", "token_keeper")
        return await PostgresConnectionStore(pool, Sealer(settings.secret_key)).reseal()


def main() -> None:
    parser = argparse.ArgumentParser(prog="mlc-token-keeper")
    parser.add_argument("command", nargs="?", choices=["serve", "reseal"], default="serve")
    args = parser.parse_args()
    settings = Settings()
    settings.refuse_unsafe_credentials("token-keeper")
    configure_logging("token-keeper", json=settings.log_json, level=settings.log_level)
    if args.command == "reseal":
        count = asyncio.run(reseal(settings))
        print(f"re-sealed the secrets of {count} connection(s) under the newest key")
        return
    run_until_stopped("token-keeper", functools.partial(app.run, settings))


if __name__ == "__main__":
    main()
