"""A dispatcher and an auditor wired as their apps wire them, on this test's own vhost and
database, sending to the Twilio simulator. Token-keeper is replaced by the install's default
account (every connection sends from it); the enricher by whatever a test publishes."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import asyncpg
import pytest_asyncio
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from auditor import api, schema
from auditor import handlers as audit_handlers
from auditor.adapters.trail import PostgresTrail, outcome_counter, security_counter
from auditor.personal import PersonalData
from common import db, topology
from common.amqp import Publisher, Routes, run_consumer
from common.contracts import (
    ChannelCredentials,
    CheckDeliveryStatus,
    Recipient,
    ReleaseNotification,
    SendNotification,
    SourceDocument,
)
from common.crypto import generate_key
from common.metrics import ConsumerMetrics, make_registry
from common.settings import ServiceSettings
from common.testing.stack import free_port
from dispatcher import handlers as dispatch_handlers
from dispatcher import outbox
from dispatcher.adapters.accounts import TwilioAccounts
from dispatcher.adapters.claims import PostgresClaimStore
from dispatcher.adapters.http import HttpClient
from dispatcher.adapters.twilio import TwilioNotifier
from sim_twilio.client import SimTwilioAdmin
from sim_twilio.server import serve
from sim_twilio.settings import Settings as SimSettings

ADMIN_TOKEN = "test-admin-token"
#: Short deadlines so that resolution happens within a test.
STALE_SECONDS = 1.0
RESOLVE_AFTER_SECONDS = 0.5
MAX_ATTEMPTS = 3


class DefaultAccount:
    """Every connection sends from the install's account (token-keeper's answer for a
    connection without its own)."""

    async def get(self, connection_id: str) -> ChannelCredentials:
        return ChannelCredentials(connection_id=connection_id)


@dataclass
class Stack:
    pool: asyncpg.Pool
    broker: AbstractRobustConnection
    publisher: Publisher
    claims: PostgresClaimStore
    trail: PostgresTrail
    notifier: TwilioNotifier
    sim: SimTwilioAdmin
    auditor_url: str
    wake: asyncio.Event
    registry: CollectorRegistry
    #: The auditor's data key for this stack (a fresh one each time).
    data: PersonalData
    admin_token: str = ADMIN_TOKEN
    max_attempts: int = MAX_ATTEMPTS
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start_relay(self) -> None:
        self.tasks.append(
            asyncio.create_task(
                outbox.relay_forever(
                    self.pool, self.publisher, self.wake, self.stop, poll_seconds=0.2
                )
            )
        )

    @staticmethod
    def command(to: str, *, content: str | None = None, number: str = "F1") -> SendNotification:
        key = uuid4().hex
        return SendNotification(
            notification_id=uuid4(),
            idempotency_key=key,
            channel="sms",
            recipient=Recipient(address=to),
            template="sms_invoice_issued",
            content=content or f"Invoice {number} {key[:8]}: 121.00 due",
            source=SourceDocument(
                connection_id="default",
                division=1,
                entity="SalesInvoices",
                id=uuid4(),
                number=number,
            ),
            fact="invoice_issued",
        )

    async def send(self, command: SendNotification) -> None:
        await self.publisher.publish(command, correlation_id=str(command.notification_id))

    async def depth(self, queue: str) -> int:
        channel = await self.broker.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return declared.declaration_result.message_count or 0
        finally:
            await channel.close()

    async def posts(self, to: str) -> list[dict[str, Any]]:
        return [
            r
            for r in await self.sim.requests("Messages.json", method="POST")
            if dict(r["form"]).get("To") == to
        ]

    async def notification(self, nid: UUID) -> dict[str, Any]:
        """The trail entry of one notification with its attempts (via the document); state
        None while the auditor has not heard of it."""
        row = await self.trail.notification(nid)
        if row is None or row["document_id"] is None:
            return {"state": None, "attempts": []}
        for item in await self.trail.document_trail(document_id=UUID(str(row["document_id"]))):
            if item["notification_id"] == str(nid):
                return item
        raise AssertionError(f"{nid} not in its document's trail")

    async def claim_state(self, key: str) -> asyncpg.Record:
        return await self.pool.fetchrow(
            "SELECT * FROM dispatch.claims WHERE idempotency_key = $1", key
        )


@pytest_asyncio.fixture
async def bare_stack(private_amqp_url: str, private_database_url: str) -> AsyncIterator[Stack]:
    """The stack without its outbox relay (a test starts it, or plays a crashed one)."""
    async with serve(
        SimSettings(http_port=0, sim_twilio_callback_attempts=1, sim_twilio_callback_timeout=1)
    ) as sim_url:
        settings = ServiceSettings(
            amqp_url=private_amqp_url,
            database_url=private_database_url,
            twilio_api_base_url=sim_url,
            public_base_url=f"http://127.0.0.1:{free_port()}",  # callbacks go nowhere
        )
        async with (
            db.pool(private_database_url) as pool,
            HttpClient(sim_url, connect_timeout=1.0, read_timeout=1.0) as http,
            SimTwilioAdmin(sim_url) as sim,
        ):
            await db.migrate(pool, "dispatch", "dispatcher")
            data = PersonalData(generate_key())
            await schema.migrate(pool, data)
            broker = await aio_pika.connect_robust(
                private_amqp_url, client_properties={"connection_name": "test-guarantees"}
            )
            channel = await broker.channel()
            await topology.declare(channel)
            publisher = await Publisher.open(broker)
            wake = asyncio.Event()
            claims = PostgresClaimStore(
                pool,
                stale_seconds=STALE_SECONDS,
                resolve_after_seconds=RESOLVE_AFTER_SECONDS,
                wake=wake,
            )
            notifier = TwilioNotifier(http, TwilioAccounts(settings, DefaultAccount()))
            registry = make_registry()
            trail = PostgresTrail(
                pool,
                data=data,
                outcomes=outcome_counter(registry),
                security=security_counter(registry),
            )
            metrics = ConsumerMetrics.create(registry)
            dispatch_routes: Routes = {
                "notification.send.": (
                    SendNotification,
                    functools.partial(
                        dispatch_handlers.send_notification,
                        claims=claims,
                        notifier=notifier,
                        max_attempts=MAX_ATTEMPTS,
                    ),
                ),
                ReleaseNotification.routing_key: (
                    ReleaseNotification,
                    functools.partial(dispatch_handlers.release_notification, claims=claims),
                ),
                CheckDeliveryStatus.routing_key: (
                    CheckDeliveryStatus,
                    functools.partial(dispatch_handlers.check_status, notifier=notifier),
                ),
            }
            audit_routes = audit_handlers.routes(trail=trail, client_id=settings.exact_client_id)
            await run_consumer(
                await broker.channel(),
                "dispatcher.sends",
                dispatch_routes,
                publisher=publisher,
                metrics=metrics,
            )
            await run_consumer(
                await broker.channel(),
                "auditor.events",
                audit_routes,
                publisher=publisher,
                metrics=metrics,
            )
            app = web.Application()
            app[api.TRAIL] = trail
            app[api.PUBLISHER] = publisher
            app[api.ADMIN_TOKEN] = SecretStr(ADMIN_TOKEN)
            app[api.CLIENT_ID] = settings.exact_client_id
            api.add_routes(app)
            runner = web.AppRunner(app)
            await runner.setup()
            port = free_port()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            stack = Stack(
                pool=pool,
                broker=broker,
                publisher=publisher,
                claims=claims,
                trail=trail,
                notifier=notifier,
                sim=sim,
                auditor_url=f"http://127.0.0.1:{port}",
                wake=wake,
                registry=registry,
                data=data,
            )
            try:
                yield stack
            finally:
                stack.stop.set()
                await asyncio.gather(*stack.tasks, return_exceptions=True)
                await runner.cleanup()
                await broker.close()


@pytest_asyncio.fixture
async def stack(bare_stack: Stack) -> Stack:
    """The stack with its outbox relay running."""
    bare_stack.start_relay()
    return bare_stack


@pytest_asyncio.fixture
async def dispatcher_sends(private_amqp_url: str) -> AsyncIterator[AbstractRobustConnection]:
    """A connection to the private node with the topology declared and ``dispatcher.sends``,
    its retry tiers and its dead letter queue empty: where consumer settlement is tested."""
    connection = await aio_pika.connect_robust(
        private_amqp_url, client_properties={"connection_name": "test_dispatcher_sends"}
    )
    channel = await connection.channel()
    await topology.declare(channel)
    queue = "dispatcher.sends"
    for name in [queue, topology.dlq_name(queue)] + [
        topology.retry_queue_name(queue, t) for t in topology.RETRY_TIERS
    ]:
        await (await channel.get_queue(name)).purge()
    yield connection
    await connection.close()
