"""The operator's ``mlc`` CLI against both simulators, a real broker and database:
connect through OAuth, list connections without secrets, ping every credential, and keep
Exact's webhook subscriptions in sync."""

from __future__ import annotations

import argparse
import asyncio
from contextlib import AsyncExitStack

import httpx
import pytest
from aiohttp.test_utils import TestServer

from common import amqp
from common.contracts import AccessToken, TokenGet
from common.crypto import generate_key
from common.rpc import RpcClient
from common.settings import SIMULATOR_DEFAULTS
from common.testing import eventually
from ingress.app import create_app as create_ingress
from ingress.settings import Settings as IngressSettings
from sim_exact.client import SimExactAdmin
from sim_exact.server import running as exact_running
from sim_exact.settings import Settings as ExactSimSettings
from sim_twilio.server import serve as twilio_serve
from sim_twilio.settings import Settings as TwilioSimSettings
from token_keeper.app import run as run_token_keeper
from token_keeper.cli import connect, connections, ping, subscriptions
from token_keeper.cli.subscriptions import TOPICS, plan_sync
from token_keeper.settings import Settings

pytestmark = pytest.mark.integration

DIVISION = int(SIMULATOR_DEFAULTS["exact_division"])  # type: ignore[call-overload]


def test_sync_plans_deletes_for_stale_urls_and_duplicates_and_creates_the_rest():
    ours, old = "https://hooks/webhooks/exact/acme", "https://old/webhooks/exact/acme"
    existing = [
        {"ID": "1", "Topic": "SalesInvoices", "CallbackURL": ours},
        {"ID": "2", "Topic": "SalesInvoices", "CallbackURL": ours},
        {"ID": "3", "Topic": "Accounts", "CallbackURL": old},
        {"ID": "4", "Topic": "Items", "CallbackURL": "https://someone-else"},
    ]
    delete, create = plan_sync(existing, ["SalesInvoices", "Accounts"], ours)
    assert delete == ["2", "3"]
    assert create == ["Accounts"]


def test_a_sync_of_some_topics_leaves_the_other_topics_alone():
    ours = "https://hooks/webhooks/exact/acme"
    existing = [
        {"ID": "1", "Topic": "SalesInvoices", "CallbackURL": ours},
        {"ID": "2", "Topic": "Contacts", "CallbackURL": ours},
        {"ID": "3", "Topic": "Retired", "CallbackURL": ours},
    ]
    assert plan_sync(existing, ["Contacts"], ours, every=False) == ([], [])
    # a full sync also removes our subscription to a topic the connector no longer uses
    assert plan_sync(existing, list(TOPICS), ours)[0] == ["3"]


class RefusingApi:
    """ExactApi's create/delete, refusing one topic as Exact would (400)."""

    def __init__(self, refused: str) -> None:
        self.refused, self.created = refused, []

    async def create(self, path, body):  # type: ignore[no-untyped-def]
        if body["Topic"] == self.refused:
            request = httpx.Request("POST", "https://exact" + path)
            raise httpx.HTTPStatusError(
                "refused", request=request, response=httpx.Response(400, request=request)
            )
        self.created.append(body["Topic"])
        return {}

    async def delete(self, path):  # type: ignore[no-untyped-def]
        return None


async def test_a_refused_topic_is_reported_and_the_next_topics_still_created():
    from token_keeper.cli.subscriptions import _apply

    api, said = RefusingApi("SalesOrders"), []
    failed = await _apply(
        api, "/api/v1/1/webhooks/WebhookSubscriptions", "https://hooks", [],  # type: ignore[arg-type]
        ["SalesInvoices", "SalesOrders", "Contacts"], said.append,
    )  # fmt: skip
    assert failed == ["c:SalesOrders"]
    assert api.created == ["SalesInvoices", "Contacts"]
    assert "Exact refused topic SalesOrders: 400" in said[0]


async def test_connect_list_ping_and_sync_subscriptions(private_amqp_url, private_database_url):
    key = generate_key()
    lines: list[str] = []
    async with AsyncExitStack() as stack:
        exact = await stack.enter_async_context(exact_running(ExactSimSettings(http_port=0)))
        twilio_url = await stack.enter_async_context(twilio_serve(TwilioSimSettings(http_port=0)))
        ingress = TestServer(create_ingress(IngressSettings(amqp_url=private_amqp_url)))
        await ingress.start_server()
        stack.push_async_callback(ingress.close)
        settings = Settings(
            amqp_url=private_amqp_url,
            database_url=private_database_url,
            secret_key=key,
            exact_base_url=exact.url,
            twilio_api_base_url=twilio_url,
            sendgrid_api_base_url=twilio_url,
            http_port=0,
            exact_connection_id="acme",
            public_base_url=str(ingress.make_url("")).rstrip("/"),
        )

        # mlc connect: consent is given by following the printed URL (the simulator approves)
        connect_args = argparse.Namespace(
            base_url=exact.url,
            region=None,
            connection="acme",
            division=[DIVISION],
            redirect_port=0,
            no_browser=True,
            timeout=30,
        )
        task = asyncio.create_task(connect.run(settings, connect_args, lines.append))
        async with httpx.AsyncClient(follow_redirects=True) as browser:
            printed = await eventually(
                lambda: [line for line in lines if "/api/oauth2/auth?" in line],
                what="the authorize URL printed",
            )
            url = printed[0].split(": ", 1)[1]
            assert (await browser.get(url)).status_code == 200
        assert await task == 0
        assert f"Connection 'acme' serves division(s) {DIVISION}." in lines

        # mlc connections list: the row, and no secret anywhere
        lines.clear()
        assert await connections.run(settings, argparse.Namespace(action="list"), lines.append) == 0
        listing = "\n".join(lines)
        assert "acme" in listing
        assert str(DIVISION) in listing
        assert "active" in listing
        for secret in (
            settings.exact_client_secret.get_secret_value(),
            settings.exact_webhook_secret.get_secret_value(),
        ):
            assert secret not in listing

        # token-keeper serves the new connection; ping asks it, never refreshing on its own
        stop = asyncio.Event()
        keeper = asyncio.create_task(run_token_keeper(settings, stop))

        async def stop_keeper() -> None:
            stop.set()
            await keeper

        stack.push_async_callback(stop_keeper)
        admin = await stack.enter_async_context(SimExactAdmin(exact.url))
        refreshes_before = sum(c["refreshes"] for c in (await admin.stats())["token_chains"])
        lines.clear()
        assert await ping.run(settings, argparse.Namespace(), lines.append) == 0, lines
        assert lines[0].startswith("exact[acme]: ok")
        assert lines[1].startswith("twilio: ok")
        assert lines[2].startswith("sendgrid: ok")
        refreshes_after = sum(c["refreshes"] for c in (await admin.stats())["token_chains"])
        assert refreshes_after == refreshes_before  # the consented token was still fresh
        token = await _token(private_amqp_url, "acme")
        assert token.divisions == [DIVISION]

        # a company bringing its own Twilio account: stored sealed, listed, pinged
        own = argparse.Namespace(
            action="set-channels",
            id="acme",
            twilio_account_sid=settings.twilio_account_sid,
            twilio_auth_token=settings.twilio_auth_token.get_secret_value(),
            twilio_messaging_service_sid=settings.twilio_messaging_service_sid,
            sendgrid_api_key=None,
            sendgrid_webhook_public_key=None,
            clear=[],
        )
        lines.clear()
        assert await connections.run(settings, own, lines.append) == 0
        assert lines == ["connection 'acme' uses Twilio of its own"]
        lines.clear()
        await connections.run(settings, argparse.Namespace(action="list"), lines.append)
        assert lines[1].endswith("own twilio")
        assert settings.twilio_auth_token.get_secret_value() not in "\n".join(lines)
        lines.clear()
        assert await ping.run(settings, argparse.Namespace(), lines.append) == 0, lines
        assert lines[3].startswith("twilio[acme]: ok")

        # subscriptions: sync creates each topic once, a second sync changes nothing
        sync = argparse.Namespace(action="sync", connection="acme", topic=None)
        lines.clear()
        assert await subscriptions.run(settings, sync, lines.append) == 0
        assert lines == [f"acme {DIVISION}: deleted 0, created {len(TOPICS)}"]
        lines.clear()
        assert await subscriptions.run(settings, sync, lines.append) == 0
        assert lines == [f"acme {DIVISION}: deleted 0, created 0"]
        lines.clear()
        listing_args = argparse.Namespace(action="list", connection="acme", topic=None)
        await subscriptions.run(settings, listing_args, lines.append)
        assert sorted(line.split()[2] for line in lines) == sorted(TOPICS)
        lines.clear()
        # a sync of one topic leaves the others' subscriptions alone
        one = argparse.Namespace(action="sync", connection="acme", topic=["Contacts"])
        assert await subscriptions.run(settings, one, lines.append) == 0
        assert lines == [f"acme {DIVISION}: deleted 0, created 0"]
        lines.clear()
        await subscriptions.run(settings, listing_args, lines.append)
        assert len(lines) == len(TOPICS)
        lines.clear()
        # an unknown topic is refused before anything is touched
        nonsense = argparse.Namespace(action="sync", connection="acme", topic=["Nonsense"])
        assert await subscriptions.run(settings, nonsense, lines.append) == 2
        assert "unknown topic(s) Nonsense" in lines[0]
        lines.clear()
        # delete asks first, and honours --topic
        delete = argparse.Namespace(action="delete", connection="acme", topic=["Contacts"])
        assert await subscriptions.run(settings, delete, lines.append) == 2
        lines.clear()
        delete.yes = True
        assert await subscriptions.run(settings, delete, lines.append) == 0
        assert lines == [f"acme {DIVISION}: deleted 1, created 0"]
        lines.clear()
        everything = argparse.Namespace(action="delete", connection="acme", topic=None, yes=True)
        await subscriptions.run(settings, everything, lines.append)
        assert lines == [f"acme {DIVISION}: deleted {len(TOPICS) - 1}, created 0"]


async def test_ping_names_what_to_fix_when_twilio_credentials_are_wrong(
    private_amqp_url, private_database_url
):
    async with twilio_serve(TwilioSimSettings(http_port=0)) as twilio_url:
        settings = Settings(
            amqp_url=private_amqp_url,
            database_url=private_database_url,
            secret_key=generate_key(),
            twilio_api_base_url=twilio_url,
            sendgrid_api_base_url=twilio_url,
            twilio_auth_token="wrong-token",
        )
        lines: list[str] = []
        assert await ping.run(settings, argparse.Namespace(), lines.append) == 1
    assert lines[0] == "exact: no connection; fix: run `mlc connect`"
    assert lines[1].startswith("twilio: account check answered 401")
    assert lines[2].startswith("sendgrid: ok")


async def _token(amqp_url: str, connection_id: str) -> AccessToken:
    async with amqp.connect(amqp_url, name="test-mlc-cli") as broker:
        rpc = await RpcClient.open(broker)
        return await rpc.call(TokenGet(connection_id=connection_id), AccessToken)


async def test_ping_accepts_a_standard_api_key_that_cannot_read_the_account(
    private_amqp_url, private_database_url
):
    key, secret = "SK" + "5" * 32, "sim-standard-key-secret"
    sim = TwilioSimSettings(
        http_port=0, twilio_api_key_sid=key, twilio_api_key_secret=secret
    )  # a Standard key, the simulator's default kind
    async with twilio_serve(sim) as twilio_url:
        settings = Settings(
            amqp_url=private_amqp_url,
            database_url=private_database_url,
            secret_key=generate_key(),
            twilio_api_base_url=twilio_url,
            sendgrid_api_base_url=twilio_url,
            twilio_api_key_sid=key,
            twilio_api_key_secret=secret,
        )
        async with httpx.AsyncClient() as http:
            account = await http.get(
                f"{twilio_url}/2010-04-01/Accounts/{settings.twilio_account_sid}.json",
                auth=(key, secret),
            )
        lines: list[str] = []
        await ping.run(settings, argparse.Namespace(), lines.append)
    assert account.status_code == 401  # what a Standard key gets for /Accounts
    twilio = next(line for line in lines if line.startswith("twilio"))
    assert twilio.startswith("twilio: ok (API key; a Standard key cannot read")
