"""``mlc subscriptions list|sync|delete``: Exact webhook subscriptions per connection and division.

Exact cannot update a subscription, so ``sync`` deletes and recreates what differs: every
configured topic ends up with exactly one subscription whose CallbackURL is ingress's
``MLC_PUBLIC_BASE_URL/webhooks/exact/<connection>``. Exact validates a new subscription by
POSTing to that URL, so ingress must be reachable there when syncing.

Topic by topic: ``--topic`` names the topics to touch (validated before anything changes;
the others are left as they are), a topic Exact refuses is reported and the next one still
synced (the exit status is 1), and ``delete`` asks first unless given ``--yes``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from common import amqp, db
from common.contracts import AccessToken, TokenGet
from common.crypto import Sealer
from common.rpc import RpcClient
from token_keeper.adapters.store import ConnectionSummary, PostgresConnectionStore
from token_keeper.cli.exact_api import ExactApi
from token_keeper.settings import Settings

__all__ = ["TOPICS", "add_arguments", "callback_url", "plan_sync", "run"]

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
    parser.add_argument(
        "--topic", action="append", help=f"only these topics (default: all: {', '.join(TOPICS)})"
    )
    parser.add_argument("--yes", action="store_true", help="delete without asking")


def plan_sync(
    existing: list[dict[str, Any]],
    topics: tuple[str, ...] | list[str],
    callback: str,
    *,
    every: bool = True,
) -> tuple[list[str], list[str]]:
    """(subscription IDs to delete, topics to create) that make ``existing`` match for
    ``topics``. With ``every`` (a sync of all topics) our subscriptions to a topic no longer
    used go too; a sync of some topics leaves the other topics' subscriptions alone."""
    delete: list[str] = []
    covered: set[str] = set()
    for sub in existing:
        ours, topic = sub["CallbackURL"] == callback, sub["Topic"]
        if topic in topics:
            if ours and topic not in covered:
                covered.add(topic)
            else:  # a stale URL of ours, or a duplicate
                delete.append(sub["ID"])
        elif ours and every and topic not in TOPICS:
            delete.append(sub["ID"])  # a topic the connector no longer uses
    return delete, [t for t in topics if t not in covered]


def callback_url(public_base_url: str, connection_id: str) -> str:
    """Where Exact posts a connection's webhooks; the id is one path segment, percent-encoded."""
    return f"{public_base_url.rstrip('/')}/webhooks/exact/{quote(connection_id, safe='')}"


async def _connections(settings: Settings, only: str | None) -> list[ConnectionSummary]:
    if settings.secret_key is None:
        raise SystemExit("MLC_SECRET_KEY is required")
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "tokens", "token_keeper")
        summaries = await PostgresConnectionStore(pool, Sealer(settings.secret_key)).summaries()
    return [s for s in summaries if only in (None, s.id)]


async def run(settings: Settings, args: argparse.Namespace, say: Say) -> int:
    unknown = [t for t in args.topic or () if t not in TOPICS]
    if unknown:
        say(f"unknown topic(s) {', '.join(unknown)}; the connector uses {', '.join(TOPICS)}")
        return 2
    topics = tuple(dict.fromkeys(args.topic or TOPICS))
    if args.action == "delete" and not getattr(args, "yes", False):
        say(f"would delete the subscriptions to {', '.join(topics)}; run again with --yes")
        return 2
    refused = 0
    async with (
        amqp.connect(settings.amqp_url, name="mlc-subscriptions") as broker,
        httpx.AsyncClient(timeout=30) as http,
    ):
        rpc = await RpcClient.open(broker, timeout=10)
        for conn in await _connections(settings, args.connection):
            token = await rpc.call(TokenGet(connection_id=conn.id), AccessToken)
            problem = settings.public_url_problem(token.base_url)
            if problem and args.action == "sync":
                say(f"{conn.id}: not subscribing: {problem}")
                refused += 1
                continue
            api = ExactApi(http, token.base_url, token.access_token.get_secret_value())
            callback = callback_url(settings.public_base_url, conn.id)
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
                    doomed = [
                        s["ID"]
                        for s in existing
                        if s["CallbackURL"] == callback and s["Topic"] in topics
                    ]
                    create: list[str] = []
                else:
                    doomed, create = plan_sync(existing, topics, callback, every=args.topic is None)
                failed = await _apply(api, path, callback, doomed, create, say)
                refused += len(failed)
                say(
                    f"{conn.id} {division}: deleted {len(doomed) - _count(failed, 'd')}, "
                    f"created {len(create) - _count(failed, 'c')}"
                    + (f", refused {len(failed)}" if failed else "")
                )
    return 1 if refused else 0


def _count(failed: list[str], kind: str) -> int:
    return sum(1 for f in failed if f.startswith(kind))


async def _apply(
    api: ExactApi, path: str, callback: str, doomed: list[str], create: list[str], say: Say
) -> list[str]:
    """Delete and create one by one, past refusals; returns what was refused ("d:<id>",
    "c:<topic>")."""
    failed: list[str] = []
    for sub_id in doomed:
        try:
            await api.delete(f"{path}(guid'{sub_id}')")
        except httpx.HTTPError as exc:
            say(f"  could not delete subscription {sub_id}: {_why(exc)}")
            failed.append(f"d:{sub_id}")
    for topic in create:
        try:
            await api.create(path, {"CallbackURL": callback, "Topic": topic})
        except httpx.HTTPError as exc:
            say(f"  Exact refused topic {topic}: {_why(exc)}")
            failed.append(f"c:{topic}")
    return failed


def _why(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"{exc.response.status_code} {exc.response.text[:160]}"
    return type(exc).__name__
