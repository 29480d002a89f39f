"""``mlc connect``: Exact's OAuth2 authorization-code flow for one company.

Prints (and opens) the authorize URL, receives the callback on a local redirect URI, exchanges
the code, lists the user's divisions, stores the chosen ones with the sealed token pair. Run
again to repair a connection marked ``needs_reconnect``.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import secrets
import sys
import webbrowser
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
from aiohttp import web

from common import db, health
from common.crypto import Sealer
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.cli.exact_api import REGIONS, ExactApi
from token_keeper.ports import TokenPair
from token_keeper.settings import Settings

__all__ = ["add_arguments", "run"]

Say = Callable[[str], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--region", choices=sorted(REGIONS), help="Exact Online site")
    where.add_argument("--base-url", help="another Exact root (e.g. the simulator)")
    parser.add_argument("--connection", help="connection id (default MLC_EXACT_CONNECTION_ID)")
    parser.add_argument("--division", type=int, action="append", help="division(s) to serve")
    parser.add_argument(
        "--redirect-port",
        type=int,
        default=8765,
        help="local port of the redirect URI registered for the app",
    )
    parser.add_argument("--no-browser", action="store_true", help="only print the URL")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for consent")


async def _receive_code(
    port: int,
    state: str,
    authorize: Callable[[str], str],
    say: Say,
    open_browser: bool,
    timeout: float,
) -> tuple[str, str]:
    """Serve the redirect URI until Exact calls it; returns (code, redirect_uri)."""
    code: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def callback(request: web.Request) -> web.Response:
        if request.query.get("state") != state or "code" not in request.query:
            return web.Response(status=400, text="ml-connector: unexpected callback")
        if not code.done():
            code.set_result(request.query["code"])
        return web.Response(text="ml-connector: connected. You can close this window.")

    app = web.Application()
    app.router.add_get("/callback", callback)
    async with health.serve(app, "127.0.0.1", port) as bound:
        redirect_uri = f"http://127.0.0.1:{bound}/callback"
        url = authorize(redirect_uri)
        say(f"Give consent in your browser: {url}")
        if open_browser:
            webbrowser.open(url)
        return await asyncio.wait_for(code, timeout), redirect_uri


def _choose(
    available: dict[int, str], wanted: list[int] | None, current: int, say: Say
) -> list[int]:
    for code, name in sorted(available.items()):
        say(f"  division {code}: {name}{'  (current)' if code == current else ''}")
    if wanted is None and sys.stdin.isatty():
        answer = input("Divisions to serve, comma-separated [current]: ").strip()
        wanted = [int(part) for part in answer.split(",") if part.strip()] or None
    chosen = wanted or [current]
    unknown = [d for d in chosen if d not in available]
    if unknown:
        raise SystemExit(f"not divisions of this user: {unknown}")
    return chosen


async def run(settings: Settings, args: argparse.Namespace, say: Say) -> int:
    if settings.secret_key is None:
        raise SystemExit("MLC_SECRET_KEY is required: tokens are stored sealed with it")
    base_url = (
        args.base_url or (REGIONS[args.region] if args.region else settings.exact_base_url)
    ).rstrip("/")
    app = ("exact_client_id", "exact_client_secret", "exact_webhook_secret")
    if problem := settings.model_copy(update={"exact_base_url": base_url}).credentials_problem(app):
        say(f"mlc connect: {problem}")
        return 2
    connection_id = args.connection or settings.exact_connection_id
    client_id = settings.exact_client_id
    client_secret = settings.exact_client_secret.get_secret_value()
    state = secrets.token_urlsafe(24)

    def authorize(redirect_uri: str) -> str:
        query = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "response_type": "code",
            "state": state,
            "force_login": "0",
        }
        return f"{base_url}/api/oauth2/auth?{urlencode(query)}"

    try:
        code, redirect_uri = await _receive_code(
            args.redirect_port, state, authorize, say, not args.no_browser, args.timeout
        )
    except TimeoutError:
        say(
            f"mlc connect: no consent within {args.timeout:g} s; run it again "
            "(--timeout gives more time)"
        )
        return 1
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        say(
            f"mlc connect: port {args.redirect_port} is in use; free it (the redirect URI "
            "registered for the app names this port) or give --redirect-port"
        )
        return 1
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(
            f"{base_url}/api/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "client_secret": client_secret,
            },
        )
        if answer.status_code != 200:
            say(f"Exact refused the code ({answer.status_code}): {answer.text[:200]}")
            return 1
        body = answer.json()
        pair = TokenPair(
            body["access_token"], body["refresh_token"], int(body.get("expires_in", 600))
        )
        api = ExactApi(client, base_url, pair.access_token)
        me = await api.me()
        current = int(me["CurrentDivision"])
        available = {
            int(d["Code"]): str(d.get("Description", "")) for d in await api.divisions(current)
        }
    chosen = _choose(available, args.division, current, say)
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "tokens", "token_keeper")
        await PostgresConnectionStore(pool, Sealer(settings.secret_key)).connect(
            id=connection_id,
            base_url=base_url,
            client_id=client_id,
            client_secret=client_secret,
            webhook_secret=settings.exact_webhook_secret.get_secret_value(),
            divisions=chosen,
            pair=pair,
            now=datetime.now(UTC),
        )
    say(f"Connection {connection_id!r} serves division(s) {', '.join(map(str, chosen))}.")
    return 0
