"""Benchmark: a monthly invoicing run through the whole pipeline, naive versus economical.

Each run starts the five services and both simulators as processes (``PipelineStack``) on a
fresh RabbitMQ vhost and database, with the Exact simulator at its real limit of 60 calls a
minute per division. In a division of its own, with no webhook subscription yet (so nothing
fires), it creates the customers (an account, a main contact with a mobile number, a second
contact without one) and the draft invoices spread over them; then it subscribes the division
to SalesInvoices, Accounts and Contacts and issues every invoice in one admin request, so
their webhooks reach ingress together. It measures:

- Exact API calls the run used and 429s it received (the simulator's ``/_sim/stats``),
- seconds from the issue to the last webhook accepted by ingress, to the enricher having
  settled one delivery per invoice (its ``mlc_consumer_messages_total``), and to the first and
  the last SMS at the Twilio simulator (polled every ``--poll`` seconds),
- SMS sent (must equal the invoices, each invoice's number in exactly one).

Two configurations, each ``--repeat`` times (medians reported):

- ``naive``: batch window 0, the cache and the sync APIs off, i.e. three calls per invoice.
  At 60 calls a minute 1,000 invoices would take ~50 minutes, so it runs
  ``--naive-invoices`` (100).
- ``economical``: the defaults (coalescing window, cache, sync APIs), ``--invoices`` (1,000).

    .venv/bin/python scripts/bench_invoicing_run.py [--invoices 1000] [--naive-invoices 100]
        [--customers 100] [--repeat 1] [--only naive|economical] [--json results.json]
        [--env MLC_NAME=VALUE ...]

Logs of each run: .mlc/bench/<configuration>-<n>/<component>.log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from common.testing.infra import (
    DEFAULT_AMQP,
    DEFAULT_DB,
    Infra,
    amqp_answers,
    create_vhost,
    db_answers,
    delete_vhost,
    find_infra,
    fresh_database,
)
from common.testing.stack import PipelineStack
from sim_exact.client import SimExactAdmin
from sim_twilio.client import SimTwilioAdmin

ROOT = Path(__file__).resolve().parent.parent
NAME = "mlc-bench"
#: A division of the benchmark's own: nothing is subscribed to it while the data is created.
DIVISION = 3108999
TOPICS = ("SalesInvoices", "Accounts", "Contacts")

CONFIGURATIONS: dict[str, dict[str, str]] = {
    "naive": {
        "MLC_ENRICHER_BATCH_WINDOW_SECONDS": "0",
        "MLC_ENRICHER_CACHE_TTL_SECONDS": "0",
        "MLC_ENRICHER_EXACT_SYNC": "false",
    },
    "economical": {},
}


@dataclass
class Run:
    configuration: str
    invoices: int
    customers: int
    exact_calls: int = 0
    rate_limited: int = 0
    exact_errors: int = 0
    calls_by_endpoint: dict[str, int] = field(default_factory=dict)
    webhooks_accepted_s: float | None = None
    enriched_s: float | None = None
    webhook_attempts_over_one: int = 0
    first_sms_s: float | None = None
    last_sms_s: float | None = None
    sms: int = 0
    invoices_with_one_sms: int = 0
    #: CPU seconds each process used over the whole run (Linux), to tell where time goes
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    #: mean seconds the enricher took per delivery, from receipt to settlement
    enricher_handle_s: float | None = None

    @property
    def calls_per_invoice(self) -> float:
        return self.exact_calls / self.invoices

    @property
    def seconds_per_invoice(self) -> float | None:
        return None if self.last_sms_s is None else self.last_sms_s / self.invoices


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


async def prepare(exact: SimExactAdmin, url: str, invoices: int, customers: int) -> list[str]:
    """The division, its customers and the draft invoices; returns the invoice ids."""
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.post("/_sim/divisions", json={"Code": DIVISION, "Country": "NL"})
        answer.raise_for_status()
    accounts = []
    for n in range(customers):
        account = await exact.create_account(
            Division=DIVISION, Name=f"Klant {n:04d} B.V.", Country="NL", Language="NL"
        )
        await exact.create_contact(
            Division=DIVISION,
            Account=account["ID"],
            FirstName=f"Klant{n:04d}",
            LastName="Contact",
            Mobile=f"+3162{n:07d}",  # fictional numbers in the +31 6 range
            IsMainContact=True,
            Language="NL",
            Country="NL",
        )
        await exact.create_contact(
            Division=DIVISION, Account=account["ID"], FirstName="Boekhouding", Country="NL"
        )
        accounts.append(account["ID"])
    drafts = await exact.create_invoices(
        [
            {"amount": 100.0 + n, "account_id": accounts[n % customers], "division": DIVISION}
            for n in range(invoices)
        ]
    )
    return [draft["InvoiceID"] for draft in drafts]


async def counter(http: httpx.AsyncClient, url: str, series: str, *needles: str) -> float:
    """The sum of a Prometheus counter's samples whose labels contain every needle (polled
    instead of the simulators' JSON records, which grow with every message and would load the
    two cores the pipeline runs on)."""
    text = (await http.get(f"{url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(series + "{") and all(n in line for n in needles)
    )


async def measure(stack: PipelineStack, run: Run, *, poll: float, timeout: float) -> None:
    async with (
        SimExactAdmin(stack.url("sim-exact"), timeout=60) as exact,
        SimTwilioAdmin(stack.url("sim-twilio"), timeout=60) as twilio,
    ):
        ids = await prepare(exact, stack.url("sim-exact"), run.invoices, run.customers)
        callback = f"{stack.url('ingress')}/webhooks/exact/default"
        for topic in TOPICS:
            await exact.subscribe(DIVISION, callback, topic)
        say(f"{run.configuration}: {run.invoices} drafts for {run.customers} customers; issuing")
        async with httpx.AsyncClient(timeout=10) as http:
            started = time.monotonic()
            issued = await exact.issue_invoices(ids)
            deadline = started + timeout
            while time.monotonic() < deadline:
                now = time.monotonic() - started
                pending = (await exact.stats())["webhooks"]["pending"]
                if run.webhooks_accepted_s is None and pending == 0:
                    run.webhooks_accepted_s = now
                settled = await counter(http, stack.url("enricher"), "mlc_consumer_messages_total")
                if run.enriched_s is None and settled >= run.invoices:
                    run.enriched_s = now
                sent = await counter(
                    http,
                    stack.url("sim-twilio"),
                    "mlc_sim_twilio_requests_total",
                    "Messages.json",
                    'method="POST"',
                    'status="201"',
                )
                if sent and run.first_sms_s is None:
                    run.first_sms_s = now
                if sent >= run.invoices:
                    run.last_sms_s = now
                    break
                await asyncio.sleep(poll)
            # let stragglers (retried webhooks, redeliveries) through before counting
            await asyncio.sleep(5)
            enricher = stack.url("enricher")
            handled = await counter(http, enricher, "mlc_consumer_handle_seconds_count")
            if handled:
                total = await counter(http, enricher, "mlc_consumer_handle_seconds_sum")
                run.enricher_handle_s = round(total / handled, 3)
        messages = await twilio.messages()
        run.sms = len(messages)
        numbers = [str(invoice["InvoiceNumber"]) for invoice in issued]
        bodies = " ".join(m["body"] for m in messages)
        run.invoices_with_one_sms = sum(1 for n in numbers if bodies.count(n) == 1)
        webhooks = await exact.webhooks()
        run.webhook_attempts_over_one = sum(1 for w in webhooks if w["attempts"] > 1)
        stats = await exact.stats()
        division = str(DIVISION)
        run.exact_calls = int(stats["calls"].get(division, 0))
        limited = stats["rate_limited"].get(division, {})
        run.rate_limited = int(limited.get("minutely", 0)) + int(limited.get("daily", 0))
        run.exact_errors = sum(e["errors"] for e in stats["errors"] if e["division"] == DIVISION)
        calls = await exact.requests(division=DIVISION)
        by_endpoint: dict[str, int] = {}
        for call in calls:
            by_endpoint[call["endpoint"]] = by_endpoint.get(call["endpoint"], 0) + 1
        run.calls_by_endpoint = by_endpoint


async def one_run(infra: Infra, configuration: str, number: int, args: argparse.Namespace) -> Run:
    invoices = args.naive_invoices if configuration == "naive" else args.invoices
    run = Run(configuration, invoices, min(args.customers, invoices))
    delete_vhost(infra, NAME)
    vhost = create_vhost(infra, NAME)
    database = await fresh_database(infra, NAME.replace("-", "_"))
    logs = ROOT / ".mlc" / "bench" / f"{configuration}-{number}"
    shutil.rmtree(logs, ignore_errors=True)  # the stack appends to its logs
    stack = PipelineStack.on_free_ports(vhost, database, logs)
    stack.extra_env = {
        **CONFIGURATIONS[configuration],
        "MLC_SIM_EXACT_MINUTELY_LIMIT": "60",
        # a reconciliation pass would add its own calls to the ones measured
        "MLC_ENRICHER_RECONCILE_SECONDS": "0",
        # quiet hours off (docs/rules), so a run at night measures the pipeline, not the clock
        "MLC_ENRICHER_RULES_PATH": str(ROOT / "docs" / "rules"),
        **dict(item.split("=", 1) for item in args.env),
    }
    # the naive run is paced at 60 calls a minute: three per invoice, plus room
    timeout = args.timeout or (invoices * 3 / 55 * 60 + 120 if configuration == "naive" else 900)
    try:
        await stack.start()
        await measure(stack, run, poll=args.poll, timeout=timeout)
        run.cpu_seconds = cpu_seconds(stack)
    finally:
        codes = await stack.stop()
        unclean = {name: code for name, code in codes.items() if code not in (0, None)}
        if unclean:
            say(f"non-zero exits: {unclean}; logs in {logs}")
        delete_vhost(infra, NAME)
    say(
        f"{configuration}: {run.exact_calls} Exact calls {run.calls_by_endpoint}, "
        f"{run.rate_limited} 429s, {run.sms} SMS ({run.invoices_with_one_sms} of "
        f"{run.invoices} invoices with exactly one), webhooks accepted after "
        f"{_fmt(run.webhooks_accepted_s)} s, enriched after {_fmt(run.enriched_s)} s, "
        f"last SMS after {_fmt(run.last_sms_s)} s; enricher {run.enricher_handle_s} s per "
        f"delivery; CPU seconds {run.cpu_seconds}"
    )
    return run


def cpu_seconds(stack: PipelineStack) -> dict[str, float]:
    """utime + stime of each component process, from /proc (empty elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    used: dict[str, float] = {}
    for name, process in stack.processes.items():
        stat = Path(f"/proc/{process.pid}/stat")
        if stat.exists():
            fields = stat.read_text().rsplit(")", 1)[1].split()
            used[name] = round((int(fields[11]) + int(fields[12])) / ticks, 1)
    return used


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(runs: list[Run]) -> str:
    lines = [
        "| configuration | invoices | customers | runs | Exact calls | calls / invoice | 429s "
        "| errors | webhooks accepted (s) | enriched (s) | first SMS (s) | last SMS (s) "
        "| s / invoice | SMS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for configuration in CONFIGURATIONS:
        group = [r for r in runs if r.configuration == configuration]
        if not group:
            continue
        first = group[0]
        lines.append(
            f"| {configuration} | {first.invoices} | {first.customers} | {len(group)} "
            f"| {_fmt(_median([r.exact_calls for r in group]), 0)} "
            f"| {_fmt(_median([r.calls_per_invoice for r in group]), 3)} "
            f"| {_fmt(_median([r.rate_limited for r in group]), 0)} "
            f"| {_fmt(_median([r.exact_errors for r in group]), 0)} "
            f"| {_fmt(_median([r.webhooks_accepted_s for r in group]))} "
            f"| {_fmt(_median([r.enriched_s for r in group]))} "
            f"| {_fmt(_median([r.first_sms_s for r in group]))} "
            f"| {_fmt(_median([r.last_sms_s for r in group]))} "
            f"| {_fmt(_median([r.seconds_per_invoice for r in group]), 3)} "
            f"| {_fmt(_median([r.sms for r in group]), 0)} |"
        )
    return "\n".join(lines)


def machine() -> str:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model or platform.processor()}), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


async def bench(args: argparse.Namespace) -> list[Run] | None:
    """Every run asked for; None when the broker or the database does not answer."""
    amqp = os.environ.get("MLC_AMQP_URL", DEFAULT_AMQP)
    database = os.environ.get("MLC_DATABASE_URL", DEFAULT_DB).rsplit("/", 1)[0] + "/postgres"
    if not (await amqp_answers(amqp) and await db_answers(database)):
        return None
    configurations = [args.only] if args.only else list(CONFIGURATIONS)
    runs: list[Run] = []
    with ExitStack() as resources:
        infra = await find_infra(resources)
        for configuration in configurations:
            for number in range(1, args.repeat + 1):
                runs.append(await one_run(infra, configuration, number, args))
    return runs


def main(args: argparse.Namespace) -> int:
    runs = asyncio.run(bench(args))
    if runs is None:
        print(
            "bench: RabbitMQ or PostgreSQL is not reachable; run `make services`", file=sys.stderr
        )
        return 1
    print()
    print(f"{datetime.now(UTC):%Y-%m-%d}, {machine()}")
    print()
    print(report(runs))
    if args.json:
        figures = [{**asdict(r), "calls_per_invoice": r.calls_per_invoice} for r in runs]
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    complete = all(r.sms == r.invoices == r.invoices_with_one_sms for r in runs)
    return 0 if complete else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--invoices", type=int, default=1000, help="economical run")
    parser.add_argument("--naive-invoices", type=int, default=100, help="naive run (paced)")
    parser.add_argument("--customers", type=int, default=100, help="invoices spread over them")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration")
    parser.add_argument("--only", choices=list(CONFIGURATIONS))
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between SMS counts")
    parser.add_argument("--timeout", type=float, default=0, help="seconds per run (0: auto)")
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="MLC_NAME=VALUE",
        help="a setting for every component of every run (repeatable)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
