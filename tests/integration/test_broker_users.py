"""Each service its own RabbitMQ user, with least-privilege permissions, and token-keeper
answering a secret only to the service that needs it.

On a vhost with one user per service (as production's definitions create them, with the
permissions ``common.topology`` derives), a token-keeper running as its own user serves the
RPCs: the enricher's user gets an Exact token, ingress's user is refused one (and the refusal
is counted), a forged ``user_id`` never reaches token-keeper, and no service user can read
another's queue, declare or bind outside its own, or publish a routing key it has no business
publishing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiormq
import httpx
import pytest
import pytest_asyncio
import yaml
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from common import amqp, topology
from common.contracts import (
    AccessToken,
    Connections,
    ConnectionsList,
    TokenGet,
    WebhookSecret,
    WebhookSecretGet,
)
from common.crypto import generate_key
from common.errors import PermanentError
from common.rpc import RpcClient
from common.testing import eventually
from common.testing.infra import (
    Infra,
    ServiceUsers,
    create_service_users,
    create_vhost,
    delete_vhost,
    unique,
)
from common.testing.stack import free_port
from sim_exact.server import running as exact_running
from sim_exact.settings import Settings as ExactSimSettings
from token_keeper.app import run as run_token_keeper
from token_keeper.settings import Settings as KeeperSettings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REFUSED = aiormq.exceptions.ChannelAccessRefused


@dataclass
class Broker:
    """The vhost, its service users and a token-keeper serving RPCs as its own user."""

    users: ServiceUsers
    connection_id: str
    metrics_url: str

    def url(self, service: str) -> str:
        return self.users.urls[service]

    async def forbidden_count(self) -> float:
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(self.metrics_url)).text
        found = re.search(r'^mlc_security_events_total\{kind="rpc_forbidden"\} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0


@pytest_asyncio.fixture(scope="module")
async def broker(infra: Infra, module_database_url: str) -> AsyncIterator[Broker]:
    vhost = unique("mlc-users")
    base = create_vhost(infra, vhost)
    users = create_service_users(infra.admin(), base)
    port, connection_id = free_port(), unique("users")
    stop = asyncio.Event()
    try:
        async with exact_running(ExactSimSettings(http_port=0)) as exact:
            settings = KeeperSettings(
                amqp_url=users.urls["token-keeper"],
                database_url=module_database_url,
                secret_key=generate_key(),
                http_port=port,
                exact_base_url=exact.url,
                exact_connection_id=connection_id,
                rpc_users=users.users,
            )
            keeper = asyncio.create_task(run_token_keeper(settings, stop))
            ready = f"http://127.0.0.1:{port}/readyz"
            await eventually(lambda: _answers(ready, keeper), timeout=30, what="token-keeper")
            yield Broker(users, connection_id, f"http://127.0.0.1:{port}/metrics")
            stop.set()
            await keeper
    finally:
        delete_vhost(infra, vhost)


async def _answers(url: str, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # token-keeper died: its error, not a timeout
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(url)).status_code == 200
    except httpx.TransportError:
        return False


async def _leave(message: AbstractIncomingMessage) -> None:
    await message.nack(requeue=True)


async def ask(
    url: str, request: TokenGet | WebhookSecretGet | ConnectionsList, reply: type
) -> object:
    async with amqp.connect(url, name="test-broker-users") as connection:
        rpc = await RpcClient.open(connection, timeout=10)
        return await rpc.call(request, reply)


async def refused(url: str, action: Callable[[AbstractChannel], Awaitable[object]]) -> bool:
    """True when the broker refuses ``action`` on a fresh channel of a connection to ``url``."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        try:
            await action(channel)
        except REFUSED:
            return True
        return False
    finally:
        await connection.close()


# --- token-keeper answers only the services entitled to a secret ----------------------------


async def test_ingress_asking_for_an_exact_token_is_refused_and_counted(broker: Broker):
    before = await broker.forbidden_count()
    with pytest.raises(PermanentError) as refusal:
        await ask(broker.url("ingress"), TokenGet(connection_id=broker.connection_id), AccessToken)
    assert refusal.value.code == "forbidden"
    assert await broker.forbidden_count() == before + 1


async def test_the_enricher_gets_its_exact_token(broker: Broker):
    token = await ask(
        broker.url("enricher"), TokenGet(connection_id=broker.connection_id), AccessToken
    )
    assert isinstance(token, AccessToken)
    assert token.access_token.get_secret_value()


async def test_the_webhook_secret_is_answered_to_ingress_but_not_to_the_dispatcher(
    broker: Broker,
):
    request = WebhookSecretGet(connection_id=broker.connection_id)
    secret = await ask(broker.url("ingress"), request, WebhookSecret)
    assert isinstance(secret, WebhookSecret)
    with pytest.raises(PermanentError) as refusal:
        await ask(broker.url("dispatcher"), request, WebhookSecret)
    assert refusal.value.code == "forbidden"


async def test_the_enricher_lists_the_working_connections_through_the_broker(broker: Broker):
    listed = await ask(broker.url("enricher"), ConnectionsList(), Connections)
    assert isinstance(listed, Connections)
    assert broker.connection_id in {c.connection_id for c in listed.connections}
    with pytest.raises(PermanentError) as refusal:
        await ask(broker.url("ingress"), ConnectionsList(), Connections)
    assert refusal.value.code == "forbidden"


async def test_a_request_without_a_user_id_is_refused_even_from_an_entitled_user(
    broker: Broker,
):
    """A client that leaves ``user_id`` out cannot be told apart from anyone: refused."""
    reply = await _raw_rpc(broker.url("enricher"), TokenGet(connection_id=broker.connection_id))
    assert reply.type == "rpc.error"
    assert json.loads(reply.body)["kind"] == "forbidden"
    assert b"access_token" not in reply.body


async def _raw_rpc(url: str, request: TokenGet) -> AbstractIncomingMessage:
    """The reply to ``request`` published without ``user_id``."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        replies = await channel.declare_queue("amq.rabbitmq.reply-to", passive=True)
        answered: asyncio.Future[AbstractIncomingMessage] = asyncio.Future()
        await replies.consume(answered.set_result, no_ack=True)
        exchange = await channel.get_exchange(topology.RPC, ensure=False)
        message = aio_pika.Message(
            request.model_dump_json().encode(),
            type=request.key(),
            reply_to="amq.rabbitmq.reply-to",
            correlation_id=str(uuid.uuid4()),
        )
        await exchange.publish(message, routing_key=request.key())
        return await asyncio.wait_for(answered, timeout=10)
    finally:
        await connection.close()


async def test_the_broker_refuses_a_request_that_claims_to_come_from_the_enricher(
    broker: Broker,
):
    """ingress's user setting the enricher's user_id: PRECONDITION_FAILED, nothing reaches
    token-keeper (nothing is refused there either)."""
    before = await broker.forbidden_count()
    forged = aio_pika.Message(
        TokenGet(connection_id=broker.connection_id).model_dump_json().encode(),
        type=TokenGet.routing_key,
        reply_to="amq.rabbitmq.reply-to",
        user_id=broker.users.users["enricher"],
    )

    async def publish(channel: AbstractChannel) -> None:
        exchange = await channel.get_exchange(topology.RPC, ensure=False)
        await exchange.publish(forged, routing_key=TokenGet.routing_key)

    connection = await aio_pika.connect(broker.url("ingress"))
    try:
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await publish(await connection.channel())
    finally:
        await connection.close()
    await asyncio.sleep(0.5)
    assert await broker.forbidden_count() == before


# --- each user stays within its own queues and routing keys --------------------------------


@pytest.mark.parametrize("service", topology.SERVICES)
async def test_each_service_user_can_declare_and_consume_its_own_queues(
    broker: Broker, service: str
):
    consumed = []
    async with amqp.connect(broker.url(service), name=f"test-own-{service}") as connection:
        channel = await connection.channel()
        await topology.declare_for(channel, service)
        for queue in topology.queues_of(service):
            declared = await channel.declare_queue(queue, passive=True)
            tag = await declared.consume(_leave)
            await declared.cancel(tag)
            consumed.append(queue)
    assert consumed == [q for q in topology.QUEUES if q.split(".")[0] == service]


async def test_a_service_user_cannot_consume_another_services_queue(broker: Broker):
    def consume(queue: str) -> Callable[[AbstractChannel], Awaitable[object]]:
        async def action(channel: AbstractChannel) -> object:
            declared = await channel.declare_queue(queue, passive=True)
            return await declared.consume(_leave)

        return action

    assert await refused(broker.url("ingress"), consume("dispatcher.sends"))
    assert await refused(broker.url("dispatcher"), consume("enricher.exact-events"))
    # the RPC requests (which name connections) are token-keeper's alone
    assert await refused(broker.url("enricher"), consume("token-keeper.rpc"))
    # the parked messages of another service (personal data) are not readable either
    assert await refused(broker.url("token-keeper"), consume("auditor.events.dlq"))


async def test_a_service_user_cannot_declare_or_bind_outside_its_permissions(broker: Broker):
    async def declare_queue(channel: AbstractChannel) -> object:
        return await channel.declare_queue("ingress.sneaky", durable=True)

    async def server_named_queue(channel: AbstractChannel) -> object:
        return await channel.declare_queue(exclusive=True)

    async def listen_to_rpc_requests(channel: AbstractChannel) -> object:
        # its own queue, bound to the RPC exchange: would copy every secret request
        own = await channel.declare_queue("dispatcher.sends", passive=True)
        return await own.bind(topology.RPC, routing_key="token.get")

    async def delete_an_exchange(channel: AbstractChannel) -> object:
        return await channel.exchange_delete(topology.COMMANDS)

    assert await refused(broker.url("ingress"), declare_queue)
    assert await refused(broker.url("auditor"), server_named_queue)
    assert await refused(broker.url("dispatcher"), listen_to_rpc_requests)
    assert await refused(broker.url("ingress"), delete_an_exchange)


async def test_a_service_user_cannot_publish_routing_keys_it_has_no_business_with(
    broker: Broker,
):
    def publish(exchange: str, key: str) -> Callable[[AbstractChannel], Awaitable[object]]:
        async def action(channel: AbstractChannel) -> object:
            target = await channel.get_exchange(exchange, ensure=False)
            return await target.publish(aio_pika.Message(b"{}"), routing_key=key)

        return action

    # ingress (facing the internet) forging a suppression or a send; the enricher an
    # operator's release; anyone but ingress and the consumers writing straight into a queue
    assert await refused(broker.url("ingress"), publish(topology.EVENTS, "suppression.removed"))
    assert await refused(broker.url("ingress"), publish(topology.COMMANDS, "notification.send.sms"))
    assert await refused(broker.url("enricher"), publish(topology.COMMANDS, "notification.release"))
    assert await refused(broker.url("ingress"), publish("", "dispatcher.sends"))
    # while what it does publish goes through
    assert not await refused(broker.url("ingress"), publish(topology.EVENTS, "twilio.status.sent"))


# --- the definitions production loads ---------------------------------------------------


def test_the_definitions_list_every_service_user_with_its_derived_permissions():
    document = topology.definitions()
    users = {u["name"]: u for u in document["users"]}
    assert set(users) == {f"mlc-{s}" for s in topology.SERVICES}
    # no usable password travels in the file: the operator sets them after the import
    assert all(u["password_hash"] == "" and u["tags"] == [] for u in users.values())
    granted = {p["user"]: p for p in document["permissions"]}
    for service in topology.SERVICES:
        expected = topology.permissions(service)
        entry = granted[f"mlc-{service}"]
        assert (entry["configure"], entry["write"], entry["read"]) == (
            expected.configure,
            expected.write,
            expected.read,
        )
        topics = {
            (t["exchange"], t["write"], t["read"])
            for t in document["topic_permissions"]
            if t["user"] == f"mlc-{service}"
        }
        assert topics == {
            (t.exchange, t.write, t.read) for t in topology.topic_permissions(service)
        }
    committed = json.loads((ROOT / "deploy/rabbitmq/definitions.json").read_text())
    assert committed == document, "run `make definitions`"


def test_the_rpc_table_names_only_the_services_that_need_each_secret():
    table = KeeperSettings(rpc_users={s: f"mlc-{s}" for s in topology.SERVICES})
    allowed = table.rpc_authorization()
    assert allowed == {
        "token.get": {"mlc-enricher", "mlc-token-keeper"},
        "token.refresh": {"mlc-enricher"},
        "webhook-secret.get": {"mlc-ingress"},
        "channel-credentials.get": {"mlc-ingress", "mlc-dispatcher"},
        "connections.list": {"mlc-enricher"},
    }
    served = {key for _, key in topology.QUEUES["token-keeper.rpc"].bindings}
    assert set(allowed) == served


def test_token_keeper_answers_nobody_but_the_production_users_by_default(monkeypatch):
    monkeypatch.delenv("MLC_RPC_USERS", raising=False)
    settings = KeeperSettings()
    assert settings.rpc_users == {s: f"mlc-{s}" for s in topology.SERVICES}
    askers = set().union(*settings.rpc_authorization().values())
    assert askers == {"mlc-enricher", "mlc-token-keeper", "mlc-ingress", "mlc-dispatcher"}


def test_a_misspelt_service_in_the_rpc_users_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("MLC_RPC_USERS", json.dumps({"enrichr": "mlc-enricher"}))
    with pytest.raises(ValueError, match="enrichr"):
        KeeperSettings()


@pytest.mark.parametrize("service", topology.SERVICES)
def test_a_users_permissions_match_its_own_queues_and_no_other(service: str):
    granted = topology.permissions(service)
    mine = set(topology.queue_names(service))
    every = {name for other in topology.SERVICES for name in topology.queue_names(other)}
    assert mine or service == "ingress"
    for name in every:
        assert bool(re.fullmatch(granted.read, name)) == (name in mine), name
        assert bool(re.fullmatch(granted.configure, name)) == (name in mine), name


# --- what compose and Kubernetes hand each service ---------------------------------------


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_compose_runs_each_service_as_its_own_user_with_no_default_password():
    compose = _compose()
    for service in topology.SERVICES:
        url = compose[service]["environment"]["MLC_AMQP_URL"]
        variable = "MLC_AMQP_PASSWORD_" + service.upper().replace("-", "_")
        assert url.startswith(f"amqp://mlc-{service}:${{{variable}:?"), url
        assert compose["rabbitmq"]["environment"][variable].startswith(f"${{{variable}:?")
    assert not any("guest:" in str(s.get("environment", {})) for s in compose.values())


def test_compose_gives_the_secret_key_to_token_keeper_only_and_never_a_default():
    compose = _compose()
    holders = {name for name, s in compose.items() if "MLC_SECRET_KEY" in s.get("environment", {})}
    assert holders == {"token-keeper"}
    assert compose["token-keeper"]["environment"]["MLC_SECRET_KEY"].startswith("${MLC_SECRET_KEY:?")


def test_compose_broker_loads_the_definitions_and_keeps_amqp_off_the_host():
    broker = _compose()["rabbitmq"]
    mounts = " ".join(broker["volumes"])
    assert "deploy/rabbitmq/definitions.json" in mounts
    assert "deploy/rabbitmq/rabbitmq.conf" in mounts
    assert "load_definitions" in (ROOT / "deploy/rabbitmq/rabbitmq.conf").read_text()
    published = [p for p in broker.get("ports", []) if "5672" in str(p).split(":")[-1]]
    assert published == ["127.0.0.1:15672:15672"]  # the UI on loopback; AMQP not at all


def _k8s_documents() -> list[dict]:
    return [
        d
        for path in sorted((ROOT / "deploy/k8s").rglob("*.yaml"))
        if path.name != "kustomization.yaml"
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]


def test_each_kubernetes_service_reads_only_its_own_secret():
    for d in _k8s_documents():
        if d["kind"] != "Deployment" or d["metadata"]["name"] not in topology.SERVICES:
            continue
        if "template" not in d["spec"]:
            continue  # an overlay's patch (replicas)
        (container,) = d["spec"]["template"]["spec"]["containers"]
        secrets = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert secrets == [f"ml-connector-{d['metadata']['name']}"], d["metadata"]["name"]


def test_definitions_with_passwords_from_env_carry_only_matching_hashes(monkeypatch, capsys):
    passwords = {s: f"pw-{s}-{uuid.uuid4().hex}" for s in topology.SERVICES}
    for service, password in passwords.items():
        monkeypatch.setenv(topology.password_variable(service), password)
    assert topology._main(["--passwords-from-env"]) == 0
    printed = capsys.readouterr().out
    assert not any(password in printed for password in passwords.values())
    hashes = {u["name"]: base64.b64decode(u["password_hash"]) for u in json.loads(printed)["users"]}
    for service, password in passwords.items():
        raw = hashes[f"mlc-{service}"]
        salt, digest = raw[:4], raw[4:]
        assert hashlib.sha256(salt + password.encode()).digest() == digest


def test_definitions_with_passwords_from_env_name_every_missing_variable(monkeypatch, capsys):
    for service in topology.SERVICES:
        monkeypatch.delenv(topology.password_variable(service), raising=False)
    monkeypatch.setenv("MLC_AMQP_PASSWORD_INGRESS", "set")
    assert topology._main(["--passwords-from-env"]) == 2
    named = set(re.findall(r"MLC_AMQP_PASSWORD_[A-Z_]+", capsys.readouterr().err))
    assert named == {topology.password_variable(s) for s in topology.SERVICES} - {
        "MLC_AMQP_PASSWORD_INGRESS"
    }
