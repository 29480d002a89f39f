"""The common mistakes end in one line that says what and where, not a traceback: the broker or
the database unreachable, a database refusing its user or password, the HTTP port taken, a
wrong MLC_SECRET_KEY, a consent that never came; and ``mlc connections set-channels`` and
``set-senders`` change only what they are given."""

from __future__ import annotations

import argparse
import asyncio
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio

from common import amqp, db, health, runtime
from common.crypto import Sealer, generate_key
from common.metrics import make_registry
from common.runtime import DependencyRefused, DependencyUnavailable
from common.testing import eventually
from common.testing.postgres import PrivatePostgres
from common.testing.stack import free_port
from token_keeper import app as token_keeper
from token_keeper.adapters.store import PostgresConnectionStore
from token_keeper.cli import connect, connections
from token_keeper.settings import Settings

pytestmark = pytest.mark.integration

SECRETS = {"client_secret": "cs", "webhook_secret": "ws", "refresh_token": "rt"}


@pytest.fixture
def short_startup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dependency that is not there is given up on after 1 s instead of 60."""
    monkeypatch.setattr(runtime, "STARTUP_TIMEOUT", 1.0)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 something else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest_asyncio.fixture
async def pool(private_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with db.pool(private_database_url) as created:
        await db.migrate(created, "tokens", "token_keeper")
        yield created


@pytest.mark.usefixtures("short_startup")
async def test_an_unreachable_database_is_named_with_its_address_and_not_its_password() -> None:
    port = free_port()
    with pytest.raises(DependencyUnavailable) as failed:
        async with db.pool(f"postgresql://postgres:pw-s3cret@127.0.0.1:{port}/mlc"):
            pass
    assert str(failed.value).startswith(f"the database at 127.0.0.1:{port} did not answer")
    assert "s3cret" not in str(failed.value)


@pytest.fixture
def password_postgres() -> Iterator[PrivatePostgres]:
    """A cluster of this test's own that asks for a password, as a production server does (the
    shared one trusts every local connection)."""
    cluster = PrivatePostgres(password="right-password").start()
    try:
        yield cluster
    finally:
        cluster.cleanup()


def test_a_database_that_refuses_the_password_stops_the_service_with_one_line(
    password_postgres: PrivatePostgres,
) -> None:
    port = password_postgres.port
    url = f"postgresql://postgres:wrong-s3cret@127.0.0.1:{port}/postgres"

    async def run(stop: asyncio.Event) -> None:
        async with db.pool(url):
            await stop.wait()

    with pytest.raises(SystemExit) as exited:
        runtime.run_until_stopped("auditor", run)
    assert str(exited.value.code) == (
        f"mlc-auditor: cannot start: the database at 127.0.0.1:{port} refused user 'postgres' "
        "(wrong password); check the user and password in MLC_DATABASE_URL"
    )

    async def right_password_opens() -> int:
        async with db.pool(password_postgres.url(), max_size=1) as pool:
            return int(await pool.fetchval("SELECT 1"))

    assert asyncio.run(right_password_opens()) == 1  # it was the password, not the server


async def test_a_database_user_that_does_not_exist_is_named_in_one_line(database_url: str) -> None:
    parts = urlsplit(database_url)
    where = f"{parts.hostname}:{parts.port or 5432}"
    url = urlunsplit(parts._replace(netloc=f"mlc-nobody:pw-s3cret@{where}"))
    with pytest.raises(DependencyRefused) as refused:
        async with db.pool(url):
            pass
    assert str(refused.value) == (
        f"the database at {where} refused user 'mlc-nobody' (role \"mlc-nobody\" does not "
        "exist); check the user and password in MLC_DATABASE_URL"
    )


@pytest.mark.usefixtures("short_startup")
async def test_an_unreachable_broker_is_named_with_its_address_and_not_its_password() -> None:
    port = free_port()
    with pytest.raises(DependencyUnavailable) as failed:
        async with amqp.connect(f"amqp://mlc-ingress:pw-s3cret@127.0.0.1:{port}/", name="t"):
            pass
    assert str(failed.value).startswith(f"the broker at 127.0.0.1:{port} did not answer")
    assert "s3cret" not in str(failed.value)


@pytest.mark.usefixtures("short_startup")
def test_a_service_without_its_broker_exits_with_one_line_naming_it() -> None:
    port = free_port()

    async def run(stop: asyncio.Event) -> None:
        async with amqp.connect(f"amqp://guest:guest@127.0.0.1:{port}/", name="dispatcher"):
            await stop.wait()

    with pytest.raises(SystemExit) as exited:
        runtime.run_until_stopped("dispatcher", run)
    message = str(exited.value.code)
    assert message.startswith(
        f"mlc-dispatcher: cannot start: the broker at 127.0.0.1:{port} did not answer"
    )
    assert "\n" not in message


def test_a_service_whose_port_is_taken_exits_with_one_line_naming_the_setting(
    taken_port: int,
) -> None:
    async def run(stop: asyncio.Event) -> None:
        app = health.health_app({}, make_registry())
        await health.serve_until(stop, app, "127.0.0.1", taken_port)

    with pytest.raises(SystemExit) as exited:
        runtime.run_until_stopped("auditor", run)
    message = str(exited.value.code)
    assert message.startswith("mlc-auditor: cannot start: the HTTP port is in use")
    assert str(taken_port) in message
    assert message.endswith("free it or set MLC_HTTP_PORT")


def _settings(private_amqp_url: str, database_url: str, key: str, port: int = 0) -> Settings:
    return Settings(
        amqp_url=private_amqp_url, database_url=database_url, secret_key=key, http_port=port
    )


async def test_token_keeper_refuses_to_start_on_a_key_that_does_not_open_its_secrets(
    pool: asyncpg.Pool, private_amqp_url: str, private_database_url: str
) -> None:
    await PostgresConnectionStore(pool, Sealer(generate_key())).ensure(
        id="acme", base_url="http://exact", client_id="client", division=1, **SECRETS
    )
    settings = _settings(private_amqp_url, private_database_url, generate_key())
    with pytest.raises(SystemExit) as refused:
        await token_keeper.run(settings, asyncio.Event())
    assert str(refused.value.code).startswith(
        "mlc-token-keeper: cannot start: MLC_SECRET_KEY does not open the sealed secrets of "
        "connection 'acme'"
    )


async def test_token_keeper_refuses_a_secret_key_that_is_no_fernet_key(
    private_amqp_url: str, private_database_url: str
) -> None:
    settings = _settings(private_amqp_url, private_database_url, "replace-me")
    with pytest.raises(SystemExit) as refused:
        await token_keeper.run(settings, asyncio.Event())
    assert "MLC_SECRET_KEY is not a comma-separated list of Fernet keys" in str(refused.value)
    assert "replace-me" not in str(refused.value)


async def test_token_keeper_is_not_ready_once_a_connection_is_sealed_with_another_key(
    pool: asyncpg.Pool, private_amqp_url: str, private_database_url: str
) -> None:
    port = free_port()
    stop = asyncio.Event()
    keeper = asyncio.create_task(
        token_keeper.run(
            _settings(private_amqp_url, private_database_url, generate_key(), port), stop
        )
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def readiness() -> httpx.Response | None:
                try:
                    return await http.get("/readyz")
                except httpx.TransportError:
                    return None

            await eventually(
                readiness, until=lambda r: r is not None and r.status_code == 200, what="ready"
            )
            # another replica, started with another key, seals a connection
            await PostgresConnectionStore(pool, Sealer(generate_key())).ensure(
                id="other-key", base_url="http://exact", client_id="client", division=1, **SECRETS
            )
            answer = await http.get("/readyz")
            assert answer.status_code == 503
            assert "secrets" in answer.json()["failed"]
    finally:
        stop.set()
        await keeper


def _connect_args(port: int) -> argparse.Namespace:
    return argparse.Namespace(
        base_url="http://127.0.0.1:9",  # never called: no consent comes
        region=None,
        connection="acme",
        division=None,
        redirect_port=port,
        no_browser=True,
        timeout=0.2,
    )


async def test_mlc_connect_says_in_one_line_that_no_consent_came() -> None:
    lines: list[str] = []
    settings = Settings(secret_key=generate_key())
    assert await connect.run(settings, _connect_args(0), lines.append) == 1
    assert lines[-1] == (
        "mlc connect: no consent within 0.2 s; run it again (--timeout gives more time)"
    )


async def test_mlc_connect_says_in_one_line_that_its_redirect_port_is_taken(
    taken_port: int,
) -> None:
    lines: list[str] = []
    settings = Settings(secret_key=generate_key())
    assert await connect.run(settings, _connect_args(taken_port), lines.append) == 1
    assert lines == [
        f"mlc connect: port {taken_port} is in use; free it (the redirect URI registered "
        "for the app names this port) or give --redirect-port"
    ]


@dataclass
class Acme:
    """Connection ``acme`` in a store, and ``mlc connections`` run against it."""

    store: PostgresConnectionStore
    run: Callable[[argparse.Namespace], Awaitable[int]]
    lines: list[str]


@pytest_asyncio.fixture
async def acme(pool: asyncpg.Pool, private_database_url: str) -> Acme:
    key = generate_key()
    store = PostgresConnectionStore(pool, Sealer(key))
    await store.ensure(
        id="acme", base_url="http://exact", client_id="client", division=1, **SECRETS
    )
    settings = Settings(database_url=private_database_url, secret_key=key)
    lines: list[str] = []
    return Acme(store, functools.partial(connections.run, settings, say=lines.append), lines)


def _set_channels(connection: str, **given: object) -> argparse.Namespace:
    options = {
        "twilio_account_sid": None,
        "twilio_auth_token": None,
        "twilio_messaging_service_sid": None,
        "sendgrid_api_key": None,
        "sendgrid_webhook_public_key": None,
        "clear": [],
    }
    return argparse.Namespace(action="set-channels", id=connection, **{**options, **given})


async def test_set_channels_changes_only_the_options_it_is_given(
    acme: Acme,
) -> None:
    store, run, lines = acme.store, acme.run, acme.lines
    twilio = _set_channels(
        "acme",
        twilio_account_sid="AC" + "1" * 32,
        twilio_auth_token="own-token",
        twilio_messaging_service_sid="MG" + "1" * 32,
    )
    assert await run(twilio) == 0
    assert await run(_set_channels("acme", sendgrid_api_key="SG.own-key")) == 0
    assert lines[-1] == "connection 'acme' uses Twilio and SendGrid of its own"
    both = await store.channel_credentials("acme")
    assert both is not None
    assert both.twilio_account_sid == "AC" + "1" * 32
    assert both.twilio_messaging_service_sid == "MG" + "1" * 32
    assert both.twilio_auth_token is not None
    assert both.twilio_auth_token.get_secret_value() == "own-token"

    assert await run(_set_channels("acme", clear=["twilio"])) == 0
    assert lines[-1] == "connection 'acme' uses SendGrid of its own"
    after = await store.channel_credentials("acme")
    assert after is not None
    assert after.twilio_account_sid is None
    assert after.sendgrid_api_key is not None
    assert after.sendgrid_api_key.get_secret_value() == "SG.own-key"


async def test_set_channels_with_nothing_to_change_changes_nothing(
    acme: Acme,
) -> None:
    assert await acme.run(_set_channels("acme")) == 2
    assert acme.lines[-1].startswith("nothing to change")


def _set_senders(connection: str, **given: object) -> argparse.Namespace:
    options = {"voice_from": None, "email_from": None, "email_from_name": None}
    options |= {"email_reply_to": None, "clear": []}
    return argparse.Namespace(action="set-senders", id=connection, **{**options, **given})


async def test_set_senders_changes_only_the_options_it_is_given(
    acme: Acme,
) -> None:
    store, run, lines = acme.store, acme.run, acme.lines
    email = _set_senders("acme", email_from="billing@acme.example", email_from_name="Acme")
    assert await run(email) == 0
    assert await run(_set_senders("acme", voice_from="+31201234567")) == 0
    assert lines[-1] == (
        "connection 'acme' has voice-from, email-from, email-from-name of its own; "
        "the others are the install's"
    )
    both = await store.channel_credentials("acme")
    assert both is not None
    assert (both.twilio_voice_from, both.email_from, both.email_from_name) == (
        "+31201234567",
        "billing@acme.example",
        "Acme",
    )

    assert await run(_set_senders("acme", clear=["email-from-name"])) == 0
    after = await store.channel_credentials("acme")
    assert after is not None
    assert after.email_from_name is None
    assert (after.twilio_voice_from, after.email_from) == ("+31201234567", "billing@acme.example")


async def test_set_senders_with_nothing_to_change_changes_nothing(
    acme: Acme,
) -> None:
    store, run, lines = acme.store, acme.run, acme.lines
    assert await run(_set_senders("acme", voice_from="+31201234567")) == 0
    assert await run(_set_senders("acme")) == 2
    assert lines[-1].startswith("nothing to change")
    # a sender option to clear and to set at once, or a channel to clear: refused, unchanged
    both = _set_senders("acme", voice_from="+31209999999", clear=["voice-from"])
    assert await run(both) == 2
    assert lines[-1] == "--clear voice-from, or give --voice-from: not both"
    assert await run(_set_senders("acme", clear=["twilio"])) == 2
    kept = await store.channel_credentials("acme")
    assert kept is not None
    assert kept.twilio_voice_from == "+31201234567"
