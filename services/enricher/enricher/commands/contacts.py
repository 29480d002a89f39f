"""``mlc contacts``: what an operator does about one Exact contact.

    mlc contacts prefer CONTACT --channel email|sms|voice|none [--connection ID]
    mlc contacts forget CONTACT [--address ADDR ...] [--connection ID] [--by NAME] --yes

``prefer`` keeps a contact's own channel preference, which comes before the account's
InvoicingMethod and the rule's order (Exact has no such field); ``--channel none`` forgets it.
Stored in the enricher's schema.

``forget`` erases one person everywhere the connector keeps them (``privacy.forget``, see
``common.contracts.privacy``): the addresses the contact cache knows for the contact, plus
every ``--address`` given (an address the cache no longer holds, e.g. after the contact was
changed in Exact). The request goes to the broker (``MLC_AMQP_URL``); each service erases its
part and the audit trail keeps the request, masked. Anonymise the contact in Exact too, or its
next change brings the person back.
"""

from __future__ import annotations

import argparse
import getpass
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast
from uuid import UUID

from common import amqp, db
from common.contracts import Channel, ForgetContact
from common.logging import mask_text
from common.settings import ServiceSettings
from enricher.adapters.notices import PostgresPreferences
from enricher.privacy import addresses_of

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["prefer", "forget"])
    parser.add_argument("contact", type=UUID, help="the Exact contact's ID")
    parser.add_argument("--channel", choices=["email", "sms", "voice", "none"])
    parser.add_argument("--connection", default="default")
    parser.add_argument(
        "--address", action="append", default=[], help="forget: an address of the person"
    )
    parser.add_argument("--by", default=None, help="forget: operator name (default: login)")
    parser.add_argument("--yes", action="store_true", help="forget: do it without asking")


async def run(
    settings: ServiceSettings, args: argparse.Namespace, say: Callable[[str], None]
) -> int:
    if args.action == "forget":
        return await _forget(settings, args, say)
    if args.channel is None:
        say("prefer needs --channel email|sms|voice|none")
        return 2
    channel = None if args.channel == "none" else cast("Channel", args.channel)
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "enricher", "enricher")
        await PostgresPreferences(pool).set(args.connection, args.contact, channel)
    what = f"prefers {channel}" if channel else "has no preference"
    say(f"contact {args.contact} of connection {args.connection!r} {what}")
    return 0


async def _forget(
    settings: ServiceSettings, args: argparse.Namespace, say: Callable[[str], None]
) -> int:
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "enricher", "enricher")
        known = await addresses_of(pool, args.connection, args.contact)
    addresses = list(dict.fromkeys([*known, *(a.strip() for a in args.address if a.strip())]))
    masked = ", ".join(mask_text(a) for a in addresses) or "no address"
    if not args.yes:
        say(f"would forget contact {args.contact} ({masked}); run again with --yes")
        return 2
    request = ForgetContact(
        request_id=uuid.uuid4(),
        connection_id=args.connection,
        contact_id=args.contact,
        addresses=addresses,
        requested_by=args.by or getpass.getuser(),
        requested_at=datetime.now(UTC),
    )
    async with amqp.connect(settings.amqp_url, name="mlc-contacts") as connection:
        publisher = await amqp.Publisher.open(connection)
        await publisher.publish(request, correlation_id=str(request.request_id))
    say(f"asked every service to forget contact {args.contact} ({masked}): {request.request_id}")
    return 0
