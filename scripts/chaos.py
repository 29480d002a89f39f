"""Chaos run: N invoices through the whole pipeline while everything that can fail does.

It starts a private RabbitMQ node and a private PostgreSQL cluster (temp folders, free loopback
ports; the machine's shared servers are never touched), a loopback TCP proxy in front of the
broker, both simulators and the five services as processes, then issues N invoices in batches
and meanwhile:

- SIGKILLs a service every ``--kill-every`` seconds, each in turn in a random order, and
  starts it again,
- restarts RabbitMQ once and PostgreSQL once, and cuts every broker connection twice (5 s),
- injects Twilio 429 / 500 / response timeouts and duplicated and reordered status callbacks,
  and Exact 429 / 503, one every ``--fault-every`` seconds.

Then it waits until every invoice is settled and checks, from the simulators' records, the
audit trail and the dead-letter queues:

- **lost**: invoices with no SMS ``delivered`` (or with a final status), no ``failed`` with a
  reason in the trail and nothing parked in a DLQ: must be 0;
- **duplicated**: invoices whose customer got more than one SMS: must be 0;
- **restarted by hand**: services that died other than by the script's own kills, or did not
  start again after one: must be 0.

    .venv/bin/python scripts/chaos.py [--invoices 1000] [--customers 100] [--seed 1]
        [--json results.json]          # make chaos; make chaos-long runs 10,000

Exit status 0 only when all three are 0. Logs: .mlc/chaos/<component>.log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx

from common import topology
from common.settings import SIMULATOR_DEFAULTS
from common.testing.infra import BrokerAdmin
from common.testing.postgres import PrivatePostgres
from common.testing.proxy import TcpProxy
from common.testing.rabbit import PrivateRabbit
from common.testing.stack import PipelineStack
from sim_exact.client import SimExactAdmin
from sim_twilio.client import SimTwilioAdmin

ROOT = Path(__file__).resolve().parent.parent
DIVISION = int(SIMULATOR_DEFAULTS["exact_division"])  # type: ignore[call-overload]
SERVICES = ("ingress", "enricher", "dispatcher", "auditor", "token-keeper")
TOPICS = ("SalesInvoices", "Accounts", "Contacts")
#: A final status, or a failure with a reason: the notification needs nobody any more.
FINAL = {"delivered", "undelivered", "failed", "read"}


@dataclass
class Result:
    invoices: int
    seed: int
    faults: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    failed_with_reason: int = 0
    parked: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    died_unexpectedly: list[str] = field(default_factory=list)
    #: starts after a kill that failed (the script then tries again, as Kubernetes would)
    failed_starts: list[str] = field(default_factory=list)
    sms: int = 0
    issue_seconds: float = 0.0
    drain_seconds: float | None = None

    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.died_unexpectedly or self.failed_starts)


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


async def prepare(exact: SimExactAdmin, invoices: int, customers: int) -> list[str]:
    """Customers (one main contact with a mobile each) and draft invoices; returns their ids."""
    accounts = []
    for n in range(customers):
        account = await exact.create_account(
            Division=DIVISION, Name=f"Chaos {n:05d} B.V.", Country="NL", Language="NL"
        )
        await exact.create_contact(
            Division=DIVISION,
            Account=account["ID"],
            FirstName=f"Chaos{n:05d}",
            LastName="Contact",
            Mobile=f"+3163{n:07d}",  # fictional numbers in the +31 6 range
            IsMainContact=True,
            Language="NL",
            Country="NL",
        )
        accounts.append(account["ID"])
    drafts = []
    for start in range(0, invoices, 500):
        drafts += await exact.create_invoices(
            [
                {"amount": 100.0 + n, "account_id": accounts[n % customers], "division": DIVISION}
                for n in range(start, min(invoices, start + 500))
            ]
        )
    return [draft["InvoiceID"] for draft in drafts]


class Chaos:
    def __init__(self, stack: PipelineStack, rabbit: PrivateRabbit, postgres: PrivatePostgres,
                 proxy: TcpProxy, result: Result, rng: random.Random) -> None:  # fmt: skip
        self.stack, self.rabbit, self.postgres, self.proxy = stack, rabbit, postgres, proxy
        self.result, self.rng = result, rng
        self.killed: set[str] = set()

    async def kills(self, every: float, until: float) -> None:
        """Every service in turn (a fresh random order each round), at random moments."""
        order: list[str] = []
        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(every * 0.5, every * 1.5))
            if not order:
                order = self.rng.sample(SERVICES, len(SERVICES))
            name = order.pop()
            self.killed.add(name)
            await self.stack.kill(name)
            self.result.kills[name] += 1
            await asyncio.sleep(self.rng.uniform(0.2, 2.0))
            await self.restart(name)

    async def restart(self, name: str) -> None:
        for _ in range(5):
            try:
                await self.stack.start_one(name, timeout=90)
                return
            except RuntimeError as exc:  # e.g. the database is being restarted right now
                say(f"{name} did not start ({exc}); again")
                self.result.failed_starts.append(name)
                await self.stack.kill(name)
                await asyncio.sleep(2)
        raise RuntimeError(f"{name} could not be restarted")

    async def infrastructure(self, until: float) -> None:
        span = max(until - time.monotonic(), 20.0)
        steps = [
            (0.15, "broker_cut", lambda: self.proxy.cut_for(5)),
            (0.35, "broker_restart", lambda: asyncio.to_thread(self.rabbit.restart)),
            (0.55, "database_restart", lambda: asyncio.to_thread(self.postgres.restart)),
            (0.75, "broker_cut", lambda: self.proxy.cut_for(5)),
        ]
        started = time.monotonic()
        for at, kind, action in steps:
            await asyncio.sleep(max(0.0, started + at * span - time.monotonic()))
            say(f"chaos: {kind}")
            self.result.faults[kind] += 1
            await action()

    async def vendor_faults(
        self, exact: SimExactAdmin, twilio: SimTwilioAdmin, every: float, until: float
    ) -> None:
        """Twilio misbehaves all along; Exact, whose 429 blocks a division for the rest of
        its calendar minute, answers 429 twice and 503 three times per run."""
        twilio_kinds: list[dict[str, Any]] = [
            {"kind": "http_429", "count": 5},
            {"kind": "http_500", "count": 5},
            {"kind": "timeout", "seconds": 5, "count": 2},
            {"kind": "duplicate_callbacks", "count": 20},
            {"kind": "reorder_callbacks", "count": 20},
        ]
        exact_faults: list[dict[str, Any]] = [
            {"kind": "http_503", "count": 2},
            {"kind": "http_429", "count": 1},
            {"kind": "http_503", "count": 2},
            {"kind": "http_429", "count": 1},
            {"kind": "http_503", "count": 2},
        ]
        span = max(until - time.monotonic(), 1.0)
        exact_at = [time.monotonic() + span * (n + 1) / (len(exact_faults) + 1)
                    for n in range(len(exact_faults))]  # fmt: skip
        while time.monotonic() < until:
            await asyncio.sleep(every)
            fault = self.rng.choice(twilio_kinds)
            await twilio.inject(**fault)
            self.result.faults[f"twilio_{fault['kind']}"] += fault["count"]
            while exact_at and exact_at[0] <= time.monotonic():
                exact_at.pop(0)
                fault = exact_faults.pop(0)
                await exact.inject(**fault)
                self.result.faults[f"exact_{fault['kind']}"] += fault["count"]
        # What was injected but not yet used up would only slow the drain down.
        async with httpx.AsyncClient(base_url=self.stack.url("sim-twilio")) as http:
            (await http.delete("/_sim/faults")).raise_for_status()
        await exact.clear_faults()


async def settled(database: str, numbers: set[str]) -> tuple[dict[str, str], int]:
    """Each invoice number's outcome in the audit trail ("delivered", "failed", ...)."""
    connection = await asyncpg.connect(database, timeout=5)
    try:
        rows = await connection.fetch(
            """
            SELECT n.document_number, n.state, s.status
              FROM audit.notifications n
              LEFT JOIN audit.statuses s ON s.provider_id = n.provider_id
            """
        )
    finally:
        await connection.close()
    outcome: dict[str, str] = {}
    for row in rows:
        if row["document_number"] not in numbers:
            continue
        if row["status"] in FINAL:
            outcome[row["document_number"]] = str(row["status"])
        elif row["state"] in ("failed", "skipped"):
            outcome.setdefault(row["document_number"], str(row["state"]))
    return outcome, len(rows)


async def parked_numbers(amqp_url: str, ids: dict[str, str]) -> set[str]:
    """Invoice numbers that something parked in a DLQ refers to (left in place)."""
    found: set[str] = set()
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for queue_name, spec in topology.QUEUES.items():
            if not spec.retries:
                continue
            queue = await channel.get_queue(topology.dlq_name(queue_name))
            held = []
            while message := await queue.get(fail=False, no_ack=False):
                held.append(message)
                body = message.body.decode(errors="replace")
                found |= {number for key, number in ids.items() if key in body or number in body}
            for message in held:
                await message.nack(requeue=True)
    finally:
        await connection.close()
    return found


async def run(args: argparse.Namespace) -> Result:
    rng = random.Random(args.seed)  # noqa: S311 - a reproducible schedule, not a secret
    result = Result(args.invoices, args.seed)
    logs = ROOT / ".mlc" / "chaos"
    shutil.rmtree(logs, ignore_errors=True)
    rabbit, postgres = PrivateRabbit(), PrivatePostgres()
    say("starting a private RabbitMQ node and PostgreSQL cluster")
    await asyncio.gather(asyncio.to_thread(rabbit.start), asyncio.to_thread(postgres.start))
    proxy = await TcpProxy("127.0.0.1", rabbit.port).start()
    admin = await asyncpg.connect(postgres.url())
    await admin.execute("CREATE DATABASE mlc")
    await admin.close()
    stack = PipelineStack.on_free_ports(
        f"amqp://guest:guest@127.0.0.1:{proxy.port}/", postgres.url("mlc"), logs
    )
    # each service its own user on the private node, as in production
    stack.broker_admin = BrokerAdmin(node=rabbit.node)
    stack.extra_env = {
        "MLC_DISPATCHER_CONNECT_TIMEOUT": "2",
        "MLC_DISPATCHER_READ_TIMEOUT": "3",
        "MLC_DISPATCHER_CLAIM_STALE_SECONDS": "20",
        "MLC_ENRICHER_RECONCILE_SECONDS": "20",
        "MLC_SHUTDOWN_GRACE_SECONDS": "5",
        # callbacks lost while ingress was down are fetched from Twilio after a minute, not 15
        "MLC_AUDITOR_STATUS_CHECK_AFTER_SECONDS": "60",
        "MLC_AUDITOR_STATUS_CHECK_INTERVAL_SECONDS": "10",
        "MLC_DISPATCHER_RESOLVE_AFTER_SECONDS": "20",
        "MLC_LOG_LEVEL": "WARNING",
        # quiet hours off (docs/rules): a run at night must not hold every SMS until morning
        "MLC_ENRICHER_RULES_PATH": str(ROOT / "docs" / "rules"),
        **dict(item.split("=", 1) for item in args.env),
    }
    try:
        await stack.start()
        async with (
            SimExactAdmin(stack.url("sim-exact"), timeout=120) as exact,
            SimTwilioAdmin(stack.url("sim-twilio"), timeout=120) as twilio,
        ):
            say(f"creating {args.invoices} draft invoices for {args.customers} customers")
            ids = await prepare(exact, args.invoices, args.customers)
            callback = f"{stack.url('ingress')}/webhooks/exact/default"
            for topic in TOPICS:
                await exact.subscribe(DIVISION, callback, topic)
            chaos = Chaos(stack, rabbit, postgres, proxy, result, rng)
            batches = [ids[i : i + args.batch] for i in range(0, len(ids), args.batch)]
            # Long enough for every service to be killed at least once (a kill and the restart
            # that follows take several seconds each).
            span = max(len(batches) * args.batch_every, args.kill_every * len(SERVICES) * 2.5)
            pause = span / len(batches)
            until = time.monotonic() + span
            say(f"issuing {len(batches)} batches over {span:.0f} s while chaos runs")
            started = time.monotonic()
            tasks = [
                asyncio.create_task(chaos.kills(args.kill_every, until)),
                asyncio.create_task(chaos.infrastructure(until)),
                asyncio.create_task(chaos.vendor_faults(exact, twilio, args.fault_every, until)),
            ]
            numbers: dict[str, str] = {}
            for batch in batches:
                for invoice in await exact.issue_invoices(batch):
                    numbers[invoice["InvoiceID"]] = str(invoice["InvoiceNumber"])
                await asyncio.sleep(pause)
            result.issue_seconds = round(time.monotonic() - started, 1)
            await asyncio.gather(*tasks)
            say("chaos over; waiting for every invoice to settle")
            wanted = set(numbers.values())
            deadline = time.monotonic() + args.drain_timeout
            outcome: dict[str, str] = {}
            while time.monotonic() < deadline:
                outcome, _ = await settled(postgres.url("mlc"), wanted)
                if len(outcome) == len(wanted):
                    result.drain_seconds = round(time.monotonic() - started, 1)
                    break
                await asyncio.sleep(3)
            parked = await parked_numbers(rabbit.url, numbers) - set(outcome)
            messages = await twilio.messages()
            result.sms = len(messages)
            per_number = Counter(
                number for m in messages for number in wanted if number in m["body"]
            )
            result.duplicated = sorted(n for n, count in per_number.items() if count > 1)
            result.delivered = sum(1 for o in outcome.values() if o in ("delivered", "read"))
            result.failed_with_reason = len(outcome) - result.delivered
            result.parked = len(parked)
            result.lost = sorted(wanted - set(outcome) - parked)
            result.died_unexpectedly = [
                name for name, process in stack.processes.items() if process.returncode is not None
            ]
    finally:
        await stack.stop()
        await proxy.stop()
        await asyncio.to_thread(rabbit.cleanup)
        await asyncio.to_thread(postgres.cleanup)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50, help="invoices issued together")
    parser.add_argument("--batch-every", type=float, default=2.0, help="seconds between batches")
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds between kills")
    parser.add_argument("--fault-every", type=float, default=2.0, help="seconds between faults")
    parser.add_argument("--drain-timeout", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--env", action="append", default=[], metavar="MLC_NAME=VALUE")
    args = parser.parse_args(argv)
    if not (PrivateRabbit.available() and PrivatePostgres.available()):
        print("chaos: needs rabbitmq-server and PostgreSQL's server binaries", file=sys.stderr)
        return 2
    result = asyncio.run(run(args))
    # asdict() would rebuild the Counters from (key, count) pairs: copy the fields instead.
    figures = {f.name: getattr(result, f.name) for f in fields(result)}
    figures = {k: dict(v) if isinstance(v, Counter) else v for k, v in figures.items()}
    figures["ok"] = result.ok()
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0 if result.ok() else 1


if __name__ == "__main__":
    sys.exit(main())
