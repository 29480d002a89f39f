"""``mlc ping``: one line per system saying what works and what to fix.

Exact: an access token from the running token-keeper (never a refresh of its own), then the
current user and the divisions. Twilio: the account and the Messaging Service. SendGrid: the
API key's scopes. Connections that bring their own Twilio/SendGrid accounts get a line each.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Awaitable, Callable

import httpx

from common import amqp, db
from common.contracts import AccessToken, ChannelCredentials, TokenGet
from common.crypto import Sealer
from common.errors import MlcError
from common.rpc import RpcClient
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.cli.exact_api import ExactApi
from token_keeper.settings import Settings

__all__ = ["run"]

Say = Callable[[str], None]


async def _exact(settings: Settings, http: httpx.AsyncClient, say: Say) -> bool:
    if settings.secret_key is None:
        say("exact: MLC_SECRET_KEY is not set; fix: set it to the key the connections use")
        return False
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "tokens", "token_keeper")
        summaries = await PostgresConnectionStore(pool, Sealer(settings.secret_key)).summaries()
    if not summaries:
        say("exact: no connection; fix: run `mlc connect`")
        return False
    ok = True
    async with amqp.connect(settings.amqp_url, name="mlc-ping") as broker:
        rpc = await RpcClient.open(broker, timeout=10)
        for s in summaries:
            try:
                token = await rpc.call(TokenGet(connection_id=s.id), AccessToken)
            except MlcError as exc:
                hint = (
                    "run `mlc connect`"
                    if exc.code == "needs_reconnect"
                    else "is mlc-token-keeper running?"
                )
                say(f"exact[{s.id}]: no access token ({exc}); fix: {hint}")
                ok = False
                continue
            api = ExactApi(http, token.base_url, token.access_token.get_secret_value())
            try:
                me = await api.me()
                divisions = {int(d["Code"]) for d in await api.divisions(token.division)}
            except httpx.HTTPError as exc:
                say(f"exact[{s.id}]: token works but the API refused: {exc}")
                ok = False
                continue
            missing = sorted(set(s.divisions or [s.division]) - divisions)
            state = f"missing divisions {missing}; fix: `mlc connect`" if missing else "ok"
            say(
                f"exact[{s.id}]: {state} (user {me.get('FullName', '?')}, "
                f"divisions {','.join(map(str, sorted(divisions)))})"
            )
            ok = ok and not missing
    return ok


def _messaging_base(api_base: str) -> str:
    # Messaging Services live on their own host at Twilio; a simulator serves both.
    return "https://messaging.twilio.com" if "api.twilio.com" in api_base else api_base


async def _twilio(
    http: httpx.AsyncClient,
    say: Say,
    *,
    label: str,
    base: str,
    account_sid: str,
    auth: tuple[str, str],
    service_sid: str | None,
) -> bool:
    basic = httpx.BasicAuth(*auth)
    account = await http.get(f"{base}/2010-04-01/Accounts/{account_sid}.json", auth=basic)
    if account.status_code == 200:
        state = f"account {account.json().get('status', '?')}"
    elif auth[0].startswith("SK") and await _messages_readable(http, base, account_sid, basic):
        # A Standard API key may use every resource but /Accounts and /Keys: what the
        # dispatcher needs (messages, calls) works, the account's status cannot be read.
        state = "API key; a Standard key cannot read the account's status"
    else:
        say(
            f"{label}: account check answered {account.status_code}; fix: the account SID "
            "and auth token (or API key)"
        )
        return False
    if service_sid is None:
        say(f"{label}: ok ({state}, no Messaging Service)")
        return True
    service = await http.get(f"{_messaging_base(base)}/v1/Services/{service_sid}", auth=basic)
    if service.status_code != 200:
        say(
            f"{label}: account ok, Messaging Service {service_sid} answered "
            f"{service.status_code}; fix: the Messaging Service SID"
        )
        return False
    say(f"{label}: ok ({state}, service {service.json().get('friendly_name', service_sid)})")
    return True


async def _messages_readable(
    http: httpx.AsyncClient, base: str, account_sid: str, basic: httpx.BasicAuth
) -> bool:
    """The key can list the account's messages (one row), as a Standard key may."""
    listing = await http.get(
        f"{base}/2010-04-01/Accounts/{account_sid}/Messages.json",
        params={"PageSize": "1"},
        auth=basic,
    )
    return listing.status_code == 200


async def _sendgrid(
    http: httpx.AsyncClient, say: Say, *, label: str, base: str, api_key: str
) -> bool:
    answer = await http.get(f"{base}/v3/scopes", headers={"Authorization": f"Bearer {api_key}"})
    if answer.status_code != 200:
        say(f"{label}: key check answered {answer.status_code}; fix: the SendGrid API key")
        return False
    if "mail.send" not in answer.json().get("scopes", []):
        say(f"{label}: the API key lacks the mail.send scope; fix: grant it")
        return False
    say(f"{label}: ok (mail.send allowed)")
    return True


async def _own_accounts(settings: Settings) -> list[ChannelCredentials]:
    """The connections that bring their own Twilio or SendGrid accounts."""
    if settings.secret_key is None:
        return []
    async with db.pool(settings.database_url, max_size=1) as pool:
        await db.migrate(pool, "tokens", "token_keeper")
        store = PostgresConnectionStore(pool, Sealer(settings.secret_key))
        found = [await store.channel_credentials(s.id) for s in await store.summaries()]
    return [c for c in found if c is not None and (c.has_twilio or c.sendgrid_api_key)]


async def run(settings: Settings, args: argparse.Namespace, say: Say) -> int:
    twilio_base = settings.twilio_api_base_url.rstrip("/")
    sendgrid_base = settings.sendgrid_api_base_url.rstrip("/")
    checks: list[tuple[str, Callable[[httpx.AsyncClient], Awaitable[bool]]]] = [
        ("exact", lambda http: _exact(settings, http, say)),
        (
            "twilio",
            lambda http: _twilio(
                http,
                say,
                label="twilio",
                base=twilio_base,
                account_sid=settings.twilio_account_sid,
                auth=settings.twilio_credentials(),
                service_sid=settings.twilio_messaging_service_sid,
            ),
        ),
        (
            "sendgrid",
            lambda http: _sendgrid(
                http,
                say,
                label="sendgrid",
                base=sendgrid_base,
                api_key=settings.sendgrid_api_key.get_secret_value(),
            ),
        ),
    ]
    for own in await _own_accounts(settings):
        if own.has_twilio and own.twilio_account_sid and own.twilio_auth_token:
            sid, token = own.twilio_account_sid, own.twilio_auth_token.get_secret_value()
            checks.append(
                (
                    f"twilio[{own.connection_id}]",
                    functools.partial(
                        _twilio,
                        say=say,
                        label=f"twilio[{own.connection_id}]",
                        base=twilio_base,
                        account_sid=sid,
                        auth=(sid, token),
                        service_sid=own.twilio_messaging_service_sid,
                    ),
                )
            )
        if own.sendgrid_api_key:
            checks.append(
                (
                    f"sendgrid[{own.connection_id}]",
                    functools.partial(
                        _sendgrid,
                        say=say,
                        label=f"sendgrid[{own.connection_id}]",
                        base=sendgrid_base,
                        api_key=own.sendgrid_api_key.get_secret_value(),
                    ),
                )
            )
    results = []
    async with httpx.AsyncClient(timeout=15) as http:
        for name, check in checks:
            try:
                results.append(await check(http))
            except (httpx.HTTPError, OSError) as exc:
                say(
                    f"{name}: unreachable ({type(exc).__name__}); fix: check the base URL and "
                    "the network"
                )
                results.append(False)
    return 0 if all(results) else 1
