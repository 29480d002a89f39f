"""``mlc``: the operator's command line for connections.

::

    mlc connect [--region nl|be|uk|de|fr|es|us | --base-url URL] [--division N ...]
    mlc connections list
    mlc connections set-channels ID [--twilio-account-sid SID --twilio-auth-token - ...]
    mlc connections set-senders ID [--voice-from +31... --email-from ADDRESS ...] [--clear OPTION]
    mlc ping
    mlc subscriptions list|sync|delete [--connection ID]
    mlc audit show <document> | failed [--since T] [--reason R]
    mlc retry <notification-id> | --document N | --reason R [--since T]
    mlc dlq list|show|replay <queue> [--all | --id MESSAGE_ID]
    mlc rules check FILE | mlc rules show [--connection ID]
    mlc templates check
    mlc contacts prefer CONTACT --channel email|sms|voice|none [--connection ID]

Settings come from the same ``MLC_`` variables as the services (database, secret key, public
URL, Twilio and SendGrid credentials). ``ping`` and ``subscriptions`` get Exact access tokens
from the running token-keeper, never by refreshing on their own.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from common.cli import plugged_commands
from common.runtime import DependencyUnavailable
from token_keeper.cli import connect, connections, dlq, ping, subscriptions
from token_keeper.settings import Settings

if TYPE_CHECKING:
    from common.cli import Command

__all__ = ["main"]


def _parser(plugged: dict[str, Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlc", description="ml-connector operations")
    sub = parser.add_subparsers(dest="command", required=True)
    connect.add_arguments(sub.add_parser("connect", help="connect an Exact Online company"))
    connections.add_arguments(
        sub.add_parser(
            "connections",
            help="list connections (never their secrets), or give "
            "one its own Twilio/SendGrid accounts",
        )
    )
    sub.add_parser("ping", help="check every configured credential against the live systems")
    subs = sub.add_parser("subscriptions", help="Exact webhook subscriptions")
    subscriptions.add_arguments(subs)
    dlq.add_arguments(sub.add_parser("dlq", help="parked messages: list, show, replay"))
    # audit, retry (auditor); rules, templates, contacts (enricher): see common.cli
    for name, command in plugged.items():
        command.add_arguments(sub.add_parser(name, help=command.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    plugged = plugged_commands()
    args = _parser(plugged).parse_args(argv)
    settings = Settings()
    runners = {
        "connect": connect.run,
        "connections": connections.run,
        "ping": ping.run,
        "subscriptions": subscriptions.run,
        "dlq": dlq.run,
        **{name: command.run for name, command in plugged.items()},
    }
    try:
        return asyncio.run(runners[args.command](settings, args, print))  # type: ignore[arg-type]
    except DependencyUnavailable as exc:  # the database or the broker: one line, which and where
        print(f"mlc {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
