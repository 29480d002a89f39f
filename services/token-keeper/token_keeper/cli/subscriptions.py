"""``mlc subscriptions list|sync|delete``: Exact webhook subscriptions per connection and division.

Exact cannot update a subscription, so ``sync`` deletes and recreates what differs: every
configured topic ends up with exactly one subscription whose CallbackURL is ingress's
``MLC_PUBLIC_BASE_URL/webhooks/exact/<connection>``. Exact validates a new subscription by
POSTing to that URL, so ingress must be reachable there when syncing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import httpx

from common import amqp, db
from common.contracts import AccessToken, TokenGet
from common.crypto import Sealer
from common.rpc import RpcClient
from token_keeper.adapters.store import ConnectionSummary, PostgresConnectionStore
from token_keeper.cli.exact_api import ExactApi
from token_keeper.settings import Settings

__all__ = ["TOPICS", "add_arguments", "plan_sync", "run"]

Say = Callable[[str], None]

#: The topics the connector reacts to (reference exact-online.md §1.5; purchase invoices
#: arrive as PurchaseEntries: a PurchaseInvoices topic is unconfirmed, so those are caught up
#: by the enricher's reconciliation only).
TOPICS = (
    "SalesInvoices",
    "SalesEntries",
    "SalesOrders",
    "PurchaseOrders",
    "PurchaseEntries",
    "Accounts",
    "Contacts",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "sync", "delete"])
    parser.add_argument("--connection", help="only this connection (default: all)")
    parser.add_argument("--topic", action="append", help="topics to sync (default: all used)")


def plan_sync(
    existing: list[dict[str, Any]], topics: tuple[str, ...] | list[str], callback: str
) -> tuple[list[str], list[str]]:
    """(subscription IDs to delete, topics to create) that make ``existing`` match."""
    delete: list[str] = []
    covered: set[str] = set()
    for sub in existing:
        ours = sub["CallbackURL"] == callback
        if ours and sub["Topic"] in topics and sub["Topic"] not in covered:
            covered.add(sub["Topic"])
        elif ours or sub["Topic"] in topics:
            # a stale URL of ours, a duplicate, or a topic we no longer use
            delete.append(sub["ID"])
    return delete, [t for t in topics if t not in covered]


def _callback(settings: Settings, connection_id: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/webhooks/exact/{connection_id}"


async def _connections(settings: Settings, only: str | None) -> list[ConnectionSummary]:
    if settings.secret_key is None:
        raise SystemExit("MLC_SECRET_KEY is required")
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "tokens", "token_keeper")
        summaries = await PostgresConnectionStore(pool, Sealer(settings.secret_key)).summaries()
    return [s for s in summaries if only in (None, s.id)]


async def run(settings: Settings, args: argparse.Namespace, say: Say) -> int:
    topics = tuple(args.topic or TOPICS)
    async with (
        amqp.connect(settings.amqp_url, name="mlc-subscriptions") as broker,
        httpx.AsyncClient(timeout=30) as http,
    ):
        rpc = await RpcClient.open(broker, timeout=10)
        for conn in await _connections(settings, args.connection):
            token = await rpc.call(TokenGet(connection_id=conn.id), AccessToken)
            api = ExactApi(http, token.base_url, token.access_token.get_secret_value())
            callback = _callback(settings, conn.id)
            for division in conn.divisions or [conn.division]:
                path = f"/api/v1/{division}/webhooks/WebhookSubscriptions"
                existing = await api.rows(path, {"$select": "ID,CallbackURL,Topic"})
                if args.action == "list":
                    for sub in existing:
                        say(f"{conn.id} {division} {sub['Topic']:16} {sub['CallbackURL']}")
                    if not existing:
                        say(f"{conn.id} {division} (no subscriptions)")
                    continue
                if args.action == "delete":
                    doomed = [s["ID"] for s in existing if s["CallbackURL"] == callback]
                    create: list[str] = []
                else:
                    doomed, create = plan_sync(existing, topics, callback)
                for sub_id in doomed:
                    await api.delete(f"{path}(guid'{sub_id}')")
                for topic in create:
                    await api.create(path, {"CallbackURL": callback, "Topic": topic})
                say(f"{conn.id} {division}: deleted {len(doomed)}, created {len(create)}")
    return 0
