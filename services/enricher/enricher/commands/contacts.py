"""``mlc contacts prefer CONTACT --channel email|sms|voice [--connection ID]``: keep a contact's
own channel preference, which comes before the account's InvoicingMethod and the rule's order
(Exact has no such field). ``--channel none`` forgets it. Stored in the enricher's schema."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import cast
from uuid import UUID

from common import db
from common.contracts import Channel
from common.settings import ServiceSettings
from enricher.adapters.notices import PostgresPreferences

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["prefer"])
    parser.add_argument("contact", type=UUID, help="the Exact contact's ID")
    parser.add_argument("--channel", required=True, choices=["email", "sms", "voice", "none"])
    parser.add_argument("--connection", default="default")


async def run(
    settings: ServiceSettings, args: argparse.Namespace, say: Callable[[str], None]
) -> int:
    channel = None if args.channel == "none" else cast("Channel", args.channel)
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "enricher", "enricher")
        await PostgresPreferences(pool).set(args.connection, args.contact, channel)
    what = f"prefers {channel}" if channel else "has no preference"
    say(f"contact {args.contact} of connection {args.connection!r} {what}")
    return 0
