"""Print which of RabbitMQ and PostgreSQL do not answer (exit 1), or nothing (exit 0).

``--wait N`` keeps trying for N seconds (a broker that was just started takes a few).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from common.testing.infra import DEFAULT_AMQP, DEFAULT_DB, amqp_answers, db_answers


async def missing(amqp_url: str, database_url: str) -> list[str]:
    up_amqp, up_db = await asyncio.gather(amqp_answers(amqp_url), db_answers(database_url))
    return [name for name, up in (("RabbitMQ", up_amqp), ("PostgreSQL", up_db)) if not up]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wait", type=float, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    amqp_url = os.environ.get("MLC_AMQP_URL", DEFAULT_AMQP)
    database_url = os.environ.get("MLC_DATABASE_URL", DEFAULT_DB).rsplit("/", 1)[0] + "/postgres"
    deadline = time.monotonic() + args.wait
    while True:
        down = asyncio.run(missing(amqp_url, database_url))
        if not down or time.monotonic() >= deadline:
            break
        time.sleep(1)
    if down:
        print(" and ".join(down))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
