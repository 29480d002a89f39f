"""``mlc ping``: one line per system saying what works and what to fix.

Exact: an access token from the running token-keeper (never a refresh of its own), then the
current user and the divisions. Twilio: the account and the Messaging Service. SendGrid: the
API key's scopes.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import httpx

from common import amqp, db
from common.contracts import AccessToken, TokenGet
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


async def _twilio(settings: Settings, http: httpx.AsyncClient, say: Say) -> bool:
    auth = httpx.BasicAuth(*settings.twilio_credentials())
    base = settings.twilio_api_base_url.rstrip("/")
    account = await http.get(
        f"{base}/2010-04-01/Accounts/{settings.twilio_account_sid}.json", auth=auth
    )
    if account.status_code != 200:
        say(
            f"twilio: account check answered {account.status_code}; fix: "
            "MLC_TWILIO_ACCOUNT_SID and MLC_TWILIO_AUTH_TOKEN (or an API key)"
        )
        return False
    service_sid = settings.twilio_messaging_service_sid
    service = await http.get(f"{_messaging_base(base)}/v1/Services/{service_sid}", auth=auth)
    if service.status_code != 200:
        say(
            f"twilio: account ok, Messaging Service {service_sid} answered "
            f"{service.status_code}; fix: MLC_TWILIO_MESSAGING_SERVICE_SID"
        )
        return False
    say(
        f"twilio: ok (account {account.json().get('status', '?')}, "
        f"service {service.json().get('friendly_name', service_sid)})"
    )
    return True


async def _sendgrid(settings: Settings, http: httpx.AsyncClient, say: Say) -> bool:
    answer = await http.get(
        f"{settings.sendgrid_api_base_url.rstrip('/')}/v3/scopes",
        headers={"Authorization": f"Bearer {settings.sendgrid_api_key.get_secret_value()}"},
    )
    if answer.status_code != 200:
        say(f"sendgrid: key check answered {answer.status_code}; fix: MLC_SENDGRID_API_KEY")
        return False
    if "mail.send" not in answer.json().get("scopes", []):
        say("sendgrid: the API key lacks the mail.send scope; fix: grant it")
        return False
    say("sendgrid: ok (mail.send allowed)")
    return True


async def run(settings: Settings, args: argparse.Namespace, say: Say) -> int:
    results = []
    async with httpx.AsyncClient(timeout=15) as http:
        for name, check in (("exact", _exact), ("twilio", _twilio), ("sendgrid", _sendgrid)):
            try:
                results.append(await check(settings, http, say))
            except (httpx.HTTPError, OSError) as exc:
                say(
                    f"{name}: unreachable ({type(exc).__name__}); fix: check the base URL and "
                    "the network"
                )
                results.append(False)
    return 0 if all(results) else 1
