"""``mlc suppressions list|add|remove``: the dispatcher's suppression list, for an operator.

    mlc suppressions list [--connection ID] [--limit N]
    mlc suppressions add ADDRESS [--channel sms|voice|email ...] [--connection ID]
    mlc suppressions remove ADDRESS --reason "..." [--channel ...] [--connection ID]

An address is an E.164 number or an email address; without ``--channel`` a number is
suppressed for SMS and calls, an email address for email. ``--connection`` defaults to ``*``
(every connection). A removal needs a reason: it travels with the ``suppression.lifted``
event into the audit trail, with the operator's name (``--by``, default the login name).
The list shows masked addresses only. Changes reach the broker through the dispatcher's
outbox (a running dispatcher relays them within a second).
"""

from __future__ import annotations

import argparse
import getpass

from common import db
from common.cli import Command, Say
from common.contracts import INSTALL_SCOPE
from common.logging import mask_text
from common.settings import ServiceSettings
from dispatcher.adapters.suppressions import PostgresSuppressions
from dispatcher.handlers import PHONE_CHANNELS

__all__ = ["SUPPRESSIONS"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "add", "remove"])
    parser.add_argument("address", nargs="?", help="E.164 number or email address")
    parser.add_argument(
        "--channel", action="append", choices=["sms", "voice", "email"], default=None
    )
    parser.add_argument("--connection", default=None, help="connection id (default: every)")
    parser.add_argument("--reason", help="why a suppression is removed (required to remove)")
    parser.add_argument("--by", default=None, help="operator name (default: login name)")
    parser.add_argument("--limit", type=int, default=100)


def _channels(args: argparse.Namespace) -> tuple[str, ...]:
    if args.channel:
        return tuple(dict.fromkeys(args.channel))
    return ("email",) if "@" in args.address else PHONE_CHANNELS


def _valid(address: str) -> bool:
    if "@" in address:
        local, _, domain = address.partition("@")
        return bool(local) and "." in domain
    digits = address.replace(" ", "")
    return digits.startswith("+") and digits[1:].isdigit() and 8 <= len(digits) <= 16


async def run(settings: ServiceSettings, args: argparse.Namespace, say: Say) -> int:
    if args.action != "list" and not (args.address and _valid(args.address)):
        say("give an E.164 number (+31...) or an email address")
        return 2
    if args.action == "remove" and not (args.reason or "").strip():
        say("a removal needs --reason (kept in the audit trail)")
        return 2
    operator = args.by or getpass.getuser()
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "dispatch", "dispatcher")
        store = PostgresSuppressions(pool)
        if args.action == "list":
            rows = await store.listing(connection_id=args.connection, limit=args.limit)
            if not rows:
                say("no suppressions")
            for r in rows:
                say(
                    f"{r['created_at']:%Y-%m-%d %H:%M} {r['connection_id']:12} "
                    f"{r['channel']:6} {r['address_masked']:24} {r['reason']:14} {r['source']}"
                )
            return 0
        scope = args.connection or INSTALL_SCOPE
        if args.action == "add":
            count = await store.add(
                scope,
                _channels(args),
                args.address,
                reason="operator",
                source="operator",
                created_by=operator,
            )
            say(f"{mask_text(args.address)} suppressed on {count} new channel(s) for {scope}")
            return 0
        count = await store.lift(
            args.connection,
            _channels(args),
            args.address,
            reasons=None,
            source="operator",
            requested_by=operator,
            note=args.reason.strip(),
        )
    if not count:
        say(f"{mask_text(args.address)} was not suppressed there")
        return 1
    say(f"{mask_text(args.address)}: {count} suppression(s) lifted")
    return 0


SUPPRESSIONS = Command("addresses never sent to (opt-outs, bounces)", add_arguments, run)
