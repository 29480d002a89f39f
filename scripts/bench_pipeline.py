"""Benchmark: throughput, latency and CPU cost of the whole pipeline, per notification.

``make bench`` (bench_invoicing_run.py) counts Exact calls, and its CPU figures include the
machine's shared broker and database, which other work also uses. This one asks what one
notification costs and how many the pipeline carries per second.

- Its own RabbitMQ node and PostgreSQL cluster (temp folders, free loopback ports, as
  ``chaos.py`` does), so that their CPU is the benchmark's alone; then ``PipelineStack`` on
  them, each service with its own broker user as in production.
- N issued invoices for C customers, prepared in the Exact simulator by
  ``bench_invoicing_run.prepare`` in a division with no webhook subscription, so the
  simulator fires nothing. The harness posts the signed SalesInvoices ``Update`` webhooks to
  ingress itself (the simulator's own ``webhook_body``, so the bytes are Exact's), either at
  a fixed concurrency (``--concurrency``, closed loop) or at a fixed offered rate (``--rate``,
  open loop): the arrival process is the benchmark's, not the simulator's.

It measures, for each run:

- throughput: notifications / (first webhook posted -> the Twilio simulator received the
  last SMS create, by the simulator's own timestamps);
- latency of each notification: its webhook's 200 -> the simulator's first SMS create for its
  invoice number (p50 / p95 / p99);
- ingress alone: first webhook posted -> the last one acknowledged;
- CPU seconds (utime + stime, children included, from /proc) of every service, of the
  private node's Erlang processes and of every process of the private cluster, from the
  first webhook until the pipeline is idle again (status callbacks and the audit trail
  included), as CPU-ms per notification. The simulators, and the harness, are reported apart
  and left out of the total: in production they are Exact and Twilio;
- resident memory of each process once started and idle (VmRSS, before the first webhook)
  and its peak (VmHWM), PostgreSQL connections per service (pg_stat_activity's
  client ports mapped to the processes that hold them, the services setting no
  ``application_name``), sampled every 2 s, and Exact calls and 429s (the simulator's stats).

    .venv/bin/python scripts/bench_pipeline.py [--invoices 3000] [--customers 100]
        [--concurrency 50 | --rate R] [--repeat 3] [--json FILE] [--markdown]
        [--env MLC_NAME=VALUE ...] [--profile SERVICE ...]

There are no assertions: it reports (exit status 1 only when a run did not send every SMS).
Logs of each run: .mlc/bench-pipeline/run-<n>/<component>.log.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import asyncpg
import httpx
from bench_common import (
    ProcessTable,
    median,
    percentile,
    port_owners,
    tree_peak_rss_kib,
)
from bench_invoicing_run import DIVISION, counter, machine, prepare, say

from common.settings import SIMULATOR_DEFAULTS
from common.testing.infra import BrokerAdmin
from common.testing.postgres import PrivatePostgres
from common.testing.rabbit import PrivateRabbit
from common.testing.stack import PipelineStack
from sim_exact.client import SimExactAdmin
from sim_exact.entities import SALES_INVOICES
from sim_exact.webhooks import webhook_body
from sim_twilio.client import SimTwilioAdmin

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / ".mlc" / "bench-pipeline"
SERVICES = ("ingress", "enricher", "dispatcher", "auditor", "token-keeper")
INFRA = ("rabbitmq", "postgres")
SIMULATORS = ("sim-exact", "sim-twilio")
#: What the total counts: what runs in production for these notifications.
COUNTED = SERVICES + INFRA
#: An invoice number in an SMS body (the simulator numbers them 26000001, ...).
NUMBER = re.compile(r"\d{5,}")
#: Pipeline idle: its processes used less than this many CPU seconds per second, twice.
IDLE_CPU_PER_S = 0.10
#: The machine's cores: with the CPU a notification costs, the most it could carry per second
#: were the pipeline alone on the machine (the simulators stand in for Exact and Twilio).
CORES = os.cpu_count() or 1


@dataclass
class Run:
    """Every figure of one run, as written by ``--json``; the report shows their medians."""

    number: int
    invoices: int
    customers: int
    concurrency: int | None
    rate: float | None
    #: first webhook posted -> last one acknowledged (200)
    ingress_s: float | None = None
    #: answers other than 200 (then retried), by status ("error": no answer)
    webhook_retries: dict[str, int] = field(default_factory=dict)
    webhooks_failed: int = 0
    #: first webhook posted -> the simulator's first / last SMS create
    first_sms_s: float | None = None
    last_sms_s: float | None = None
    throughput_per_s: float | None = None
    #: SMS per second between the 10th and the 90th percentile SMS: the pipeline's pace once
    #: full, without the fill at the start and the drain at the end
    sustained_per_s: float | None = None
    sms: int = 0
    invoices_with_sms: int = 0
    invoices_with_more_sms: int = 0
    latency_s: dict[str, float | None] = field(default_factory=dict)
    #: first webhook posted -> the pipeline idle again (the CPU interval)
    busy_s: float | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)
    #: the same, up to the moment the last SMS was seen (without the status callbacks' tail)
    cpu_s_to_last_sms: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_notification: dict[str, float] = field(default_factory=dict)
    #: CPU-ms per second each process used while idle, just before the webhooks
    idle_cpu_ms_per_s: dict[str, float] = field(default_factory=dict)
    harness_cpu_s: float | None = None
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    #: Resident set of each component once started and idle, before the first webhook.
    idle_rss_mib: dict[str, float] = field(default_factory=dict)
    pg_connections_max: dict[str, int] = field(default_factory=dict)
    pg_connections_end: dict[str, int] = field(default_factory=dict)
    exact_calls: int = 0
    exact_429s: int = 0
    exact_errors: int = 0
    exact_calls_by_endpoint: dict[str, int] = field(default_factory=dict)
    #: webhooks the Exact simulator fired itself (must be 0: the harness posts them)
    simulator_webhooks: int = 0
    unclean_exits: dict[str, int | None] = field(default_factory=dict)


@dataclass
class Drive:
    """What posting the webhooks gave: per invoice, the wall-clock second of its 200."""

    started: float
    acked: list[float | None]
    retries: Counter[str] = field(default_factory=Counter)
    failed: int = 0


# posting the webhooks ----------------------------------------------------------------------


async def drive(
    url: str, bodies: list[bytes], *, concurrency: int, rate: float | None, inflight: int
) -> Drive:
    """Post every body to ingress: ``concurrency`` at a time, or (with ``rate``) one every
    1/rate seconds whatever the answers, at most ``inflight`` waiting. A non-200 answer (such
    as ingress's own rate limit) is retried, after its ``Retry-After`` when it gives one, up to
    five times, as a vendor retries: the webhook counts once it is acknowledged.

    The harness's own garbage collector is paused meanwhile: a full collection of its
    lists of bodies and tasks stalls the load generator for 100-200 ms, and an open loop
    counts that stall into every answer it delays (at 2,000/s, a p99 of 44-123 ms against
    12-16 ms with it paused, the same ingress)."""
    with _collector_paused():
        return await _drive(url, bodies, concurrency=concurrency, rate=rate, inflight=inflight)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def _drive(
    url: str, bodies: list[bytes], *, concurrency: int, rate: float | None, inflight: int
) -> Drive:
    result = Drive(time.time(), [None] * len(bodies))
    headers = {"Content-Type": "application/json; charset=utf-8"}
    connector = aiohttp.TCPConnector(limit=inflight if rate else concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send(index: int) -> None:
            for _ in range(6):
                wait = 0.5
                try:
                    async with session.post(url, data=bodies[index], headers=headers) as answer:
                        await answer.read()
                        if answer.status == 200:
                            result.acked[index] = time.time()
                            return
                        result.retries[str(answer.status)] += 1
                        with contextlib.suppress(ValueError):  # a date: keep 0.5 s
                            wait = float(answer.headers.get("Retry-After", wait))
                except (aiohttp.ClientError, TimeoutError):
                    result.retries["error"] += 1
                await asyncio.sleep(min(wait, 5.0))
            result.failed += 1

        result.started = time.time()
        if rate:
            start = time.monotonic()
            tasks = []
            for index in range(len(bodies)):
                delay = start + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(send(index)))
            await asyncio.gather(*tasks)
        else:
            indexes = iter(range(len(bodies)))

            async def worker() -> None:
                for index in indexes:  # one iterator shared by the workers
                    await send(index)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


def signed_webhooks(
    stack: PipelineStack, client_id: str, invoice_ids: list[str]
) -> tuple[str, list[bytes]]:
    """Ingress's URL for the connection, and one signed SalesInvoices Update per invoice,
    byte for byte what the simulator would post (its ``webhook_body``, keyed with the
    webhook secret token-keeper hands ingress)."""
    env = stack.env("token-keeper")
    secret = env.get("MLC_EXACT_WEBHOOK_SECRET", str(SIMULATOR_DEFAULTS["exact_webhook_secret"]))
    connection = env.get("MLC_EXACT_CONNECTION_ID", "default")
    public_url = stack.env("sim-exact")["MLC_SIM_EXACT_PUBLIC_URL"].rstrip("/")
    created_on = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
    bodies = [
        webhook_body(
            secret,
            topic="SalesInvoices",
            client_id=client_id,
            division=DIVISION,
            action="Update",
            key=invoice_id,
            endpoint=SALES_INVOICES.record_url(public_url, DIVISION, invoice_id),
            event_created_on=created_on,
        )
        for invoice_id in invoice_ids
    ]
    return f"{stack.url('ingress')}/webhooks/exact/{connection}", bodies


# processes -----------------------------------------------------------------------------------


def component_roots(
    stack: PipelineStack, rabbit: PrivateRabbit, postgres: PrivatePostgres
) -> dict[str, list[int]]:
    """The root process of each component: the services' and simulators' own processes, the
    private node's Erlang VM (its pid file), and the private cluster's postmaster."""
    roots = {name: [process.pid] for name, process in stack.processes.items()}
    roots["rabbitmq"] = _rabbit_pids(rabbit)
    roots["postgres"] = _first_int(postgres.data / "postmaster.pid")
    return roots


def _rabbit_pids(rabbit: PrivateRabbit) -> list[int]:
    pids = _first_int(rabbit.dir / "pid")
    if pids:
        return pids
    # no pid file: the Erlang VM whose command line names the private node
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command and command[0].endswith(b"beam.smp") and rabbit.node.encode() in command:
            found.append(int(entry.name))
    return found


def _first_int(path: Path) -> list[int]:
    try:
        return [int(path.read_text().split()[0])]
    except (OSError, ValueError, IndexError):
        return []


def _harness_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _sub(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


class Sampler:
    """Samples PostgreSQL connections per service every ``every`` seconds while the run goes
    (one connection of its own, left out of the counts)."""

    def __init__(self, database_url: str, roots: dict[str, list[int]], every: float) -> None:
        self.database_url, self.every = database_url, every
        self.owners = {n: pids for n, pids in roots.items() if n in SERVICES + SIMULATORS}
        self.most: Counter[str] = Counter()
        self.last: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._connection = await asyncpg.connect(self.database_url)
        self._task = asyncio.create_task(self._loop())

    async def sample(self) -> Counter[str]:
        assert self._connection is not None  # noqa: S101 - started first
        rows = await self._connection.fetch(
            "SELECT client_port FROM pg_stat_activity "
            "WHERE client_port IS NOT NULL AND pid <> pg_backend_pid()"
        )
        owners = port_owners(ProcessTable(), self.owners)
        counts = Counter(owners.get(row["client_port"], "other") for row in rows)
        for name, count in counts.items():
            self.most[name] = max(self.most[name], count)
        self.last = counts
        return counts

    async def _loop(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.every)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._connection is not None:
            await self.sample()
            await self._connection.close()


async def settle(roots: dict[str, list[int]], limit: float) -> float:
    """Wait (at most ``limit`` seconds) until the counted processes have been idle for two
    seconds in a row: the status callbacks and the audit trail that follow the last SMS are
    part of what a notification costs. Returns the seconds waited."""
    counted = {name: roots[name] for name in COUNTED if name in roots}
    started = time.monotonic()
    quiet = 0
    before = sum(ProcessTable().cpu_seconds(counted).values())
    while time.monotonic() - started < limit and quiet < 2:
        await asyncio.sleep(1.0)
        now = sum(ProcessTable().cpu_seconds(counted).values())
        quiet = quiet + 1 if now - before < IDLE_CPU_PER_S else 0
        before = now
    return time.monotonic() - started


class Profiler:
    """``py-spy record`` attached to one process (non-blocking sampling, so the profiled
    service is not paused), stopped with SIGINT, which makes py-spy write its flame graph."""

    def __init__(self, executable: str, pid: int, output: Path) -> None:
        self.output = output
        # a .txt output gets py-spy's "raw" (collapsed stacks) format, for reading as text
        raw = ["--format", "raw"] if output.suffix == ".txt" else []
        self._process = subprocess.Popen(
            [executable, "record", "--pid", str(pid), "--nonblocking", "--rate", "100",
             *raw, "--output", str(output)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def py_spy() -> str | None:
    """py-spy on PATH or in the project's virtualenv; None when it is not installed."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


async def _table_writes(database_url: str, output: Path, notifications: int) -> None:
    """Rows inserted, updated (HOT or not), deleted per notification, per table, with the
    indexes each keeps, and the time spent in each stored function: where PostgreSQL's share
    of the CPU goes."""
    connection = await asyncpg.connect(database_url)
    try:
        tables = await connection.fetch(
            "SELECT t.schemaname || '.' || t.relname AS name, t.n_tup_ins, t.n_tup_upd,"
            " t.n_tup_hot_upd, t.n_tup_del,"
            " (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid) AS indexes"
            " FROM pg_stat_user_tables t ORDER BY t.n_tup_ins + t.n_tup_upd DESC"
        )
        functions = await connection.fetch(
            "SELECT schemaname || '.' || funcname AS name, calls, total_time, self_time"
            " FROM pg_stat_user_functions ORDER BY self_time DESC"
        )
    finally:
        await connection.close()
    per = max(notifications, 1)
    lines = ["table  inserts  updates  hot-updates  deletes (per notification)  indexes"]
    for row in tables:
        if row["n_tup_ins"] + row["n_tup_upd"] + row["n_tup_del"] == 0:
            continue
        counts = (row[k] / per for k in ("n_tup_ins", "n_tup_upd", "n_tup_hot_upd", "n_tup_del"))
        lines.append(
            f"{row['name']}  " + "  ".join(f"{c:.2f}" for c in counts) + f"  {row['indexes']}"
        )
    lines += ["", "function  calls  total-ms  self-ms  self-us per notification"]
    for row in functions:
        lines.append(
            f"{row['name']}  {row['calls']}  {row['total_time']:.0f}  {row['self_time']:.0f}"
            f"  {1000 * row['self_time'] / per:.1f}"
        )
    await asyncio.to_thread(output.write_text, "\n".join(lines) + "\n", encoding="utf-8")


# one run -------------------------------------------------------------------------------------


async def measure(
    stack: PipelineStack,
    rabbit: PrivateRabbit,
    postgres: PrivatePostgres,
    run: Run,
    args: argparse.Namespace,
    logs: Path,
) -> None:
    async with (
        SimExactAdmin(stack.url("sim-exact"), timeout=120) as exact,
        SimTwilioAdmin(stack.url("sim-twilio"), timeout=120) as twilio,
        httpx.AsyncClient(timeout=10) as http,
    ):
        say(f"run {run.number}: {run.invoices} invoices for {run.customers} customers")
        ids = await prepare(exact, stack.url("sim-exact"), run.invoices, run.customers)
        issued = await exact.issue_invoices(ids)  # nothing subscribed: no webhook fires
        numbers = {str(row["InvoiceID"]): str(row["InvoiceNumber"]) for row in issued}
        client_id = str((await exact.seed())["client_id"])
        url, bodies = signed_webhooks(stack, client_id, ids)
        roots = component_roots(stack, rabbit, postgres)
        missing = [name for name, pids in roots.items() if not pids]
        if missing:
            say(f"no process found for {missing}: their CPU is not measured")
        sampler = Sampler(postgres.url("mlc"), roots, every=2.0)
        await sampler.start()

        idle_before = ProcessTable().cpu_seconds(roots)
        await asyncio.sleep(args.idle)
        idle = _sub(ProcessTable().cpu_seconds(roots), idle_before)
        run.idle_cpu_ms_per_s = {n: round(s * 1000 / args.idle, 1) for n, s in idle.items()}
        resting = ProcessTable()
        for name, pids in roots.items():
            if (rss := tree_peak_rss_kib(resting, pids, "VmRSS")) is not None:
                run.idle_rss_mib[name] = round(rss / 1024, 1)

        profilers = []
        if args.profile and (executable := py_spy()):
            for name in args.profile:
                output = logs / f"profile-{name}.{'txt' if args.profile_raw else 'svg'}"
                profilers.append(Profiler(executable, stack.processes[name].pid, output))

        mode = f"at {args.rate}/s" if args.rate else f"{args.concurrency} at a time"
        say(f"run {run.number}: posting {len(bodies)} webhooks {mode}")
        harness_before = _harness_cpu()
        cpu_before = ProcessTable().cpu_seconds(roots)
        posting = asyncio.create_task(
            drive(url, bodies, concurrency=args.concurrency, rate=args.rate, inflight=args.inflight)
        )
        deadline = time.monotonic() + (args.timeout or 180 + run.invoices * 0.2)
        sent = 0.0
        while time.monotonic() < deadline:
            await asyncio.sleep(args.poll)
            sent = await counter(
                http,
                stack.url("sim-twilio"),
                "mlc_sim_twilio_requests_total",
                "Messages.json",
                'method="POST"',
                'status="201"',
            )
            if posting.done() and (sent >= run.invoices or posting.exception()):
                break
        cpu_at_last_sms = ProcessTable().cpu_seconds(roots)
        if sent < run.invoices:
            say(f"run {run.number}: only {sent:.0f} of {run.invoices} SMS before the timeout")
        driven = await posting
        waited = await settle(roots, args.settle)
        table = ProcessTable()
        cpu_after = table.cpu_seconds(roots)
        run.harness_cpu_s = round(_harness_cpu() - harness_before, 2)
        run.busy_s = round(time.time() - driven.started, 2)
        for profiler in profilers:
            profiler.stop()
            say(f"run {run.number}: py-spy profile: {profiler.output}")
        await sampler.stop()
        await _table_writes(postgres.url("mlc"), logs / "pg-writes.txt", run.invoices)
        run.pg_connections_max = dict(sampler.most)
        run.pg_connections_end = dict(sampler.last)
        say(f"run {run.number}: idle again {waited:.1f} s after the last SMS; collecting")

        run.cpu_s = _sub(cpu_after, cpu_before)
        run.cpu_s_to_last_sms = _sub(cpu_at_last_sms, cpu_before)
        per = {n: round(s * 1000 / run.invoices, 2) for n, s in run.cpu_s.items()}
        per["total"] = round(sum(per.get(n, 0.0) for n in COUNTED), 2)
        run.cpu_ms_per_notification = per
        for name, pids in roots.items():
            peak = tree_peak_rss_kib(table, pids)
            if peak is not None:
                run.peak_rss_mib[name] = round(peak / 1024, 1)

        run.webhook_retries = dict(driven.retries)
        run.webhooks_failed = driven.failed
        acked = [t for t in driven.acked if t is not None]
        if acked:
            run.ingress_s = round(max(acked) - driven.started, 3)
        await _sms_figures(twilio, run, driven, ids, numbers)
        await _exact_figures(exact, run)


async def _sms_figures(
    twilio: SimTwilioAdmin, run: Run, driven: Drive, ids: list[str], numbers: dict[str, str]
) -> None:
    """Throughput and latencies from the Twilio simulator's record of each SMS create."""
    first_sms: dict[str, float] = {}
    sms_per_number: Counter[str] = Counter()
    wanted = set(numbers.values())
    for request in await twilio.requests("Messages.json", method="POST"):
        if request.get("status") != 201:
            continue
        body = " ".join(v for k, v in request.get("form") or [] if k == "Body")
        at = datetime.fromisoformat(request["received_at"]).timestamp()
        for number in set(NUMBER.findall(body)) & wanted:
            sms_per_number[number] += 1
            first_sms[number] = min(first_sms.get(number, at), at)
    run.sms = sum(sms_per_number.values())
    run.invoices_with_sms = len(first_sms)
    run.invoices_with_more_sms = sum(1 for count in sms_per_number.values() if count > 1)
    if first_sms:
        run.first_sms_s = round(min(first_sms.values()) - driven.started, 3)
        run.last_sms_s = round(max(first_sms.values()) - driven.started, 3)
        if run.last_sms_s > 0:
            run.throughput_per_s = round(len(first_sms) / run.last_sms_s, 1)
        times = sorted(first_sms.values())
        low, high = percentile(times, 0.1), percentile(times, 0.9)
        if low is not None and high is not None and high > low:
            run.sustained_per_s = round(0.8 * (len(times) - 1) / (high - low), 1)
    latencies = [
        first_sms[numbers[invoice_id]] - acked
        for invoice_id, acked in zip(ids, driven.acked, strict=True)
        if acked is not None and numbers[invoice_id] in first_sms
    ]
    run.latency_s = {
        "p50": _round(percentile(latencies, 0.50)),
        "p95": _round(percentile(latencies, 0.95)),
        "p99": _round(percentile(latencies, 0.99)),
        "max": _round(max(latencies) if latencies else None),
    }


async def _exact_figures(exact: SimExactAdmin, run: Run) -> None:
    stats = await exact.stats()
    division = str(DIVISION)
    run.exact_calls = int(stats["calls"].get(division, 0))
    limited = stats["rate_limited"].get(division, {})
    run.exact_429s = int(limited.get("minutely", 0)) + int(limited.get("daily", 0))
    run.exact_errors = sum(e["errors"] for e in stats["errors"] if e["division"] == DIVISION)
    run.simulator_webhooks = sum(stats["webhooks"].values())
    by_endpoint: Counter[str] = Counter(
        call["endpoint"] for call in await exact.requests(division=DIVISION)
    )
    run.exact_calls_by_endpoint = dict(by_endpoint)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def private_infra_available(script: str) -> bool:
    """Whether a private broker and database can be started here; says why not."""
    if PrivateRabbit.available() and PrivatePostgres.available():
        return True
    print(
        f"{script}: needs rabbitmq-server and PostgreSQL's server binaries "
        "(initdb, pg_ctl) to start a private broker and database",
        file=sys.stderr,
    )
    return False


@contextlib.asynccontextmanager
async def private_stack(
    number: int, logs: Path, env: Sequence[str]
) -> AsyncIterator[tuple[PipelineStack, PrivateRabbit, PrivatePostgres]]:
    """A fresh private RabbitMQ node and PostgreSQL cluster (database ``mlc``) and a stack
    (not started) on them, each service its own broker user as in production; all of it gone
    afterwards, so every run starts from the same empty state. ``env``: ``MLC_NAME=VALUE``."""
    shutil.rmtree(logs, ignore_errors=True)  # the stack appends to its logs
    rabbit, postgres = PrivateRabbit(), PrivatePostgres()
    say(f"run {number}: starting a private RabbitMQ node and PostgreSQL cluster")
    try:
        await asyncio.gather(asyncio.to_thread(rabbit.start), asyncio.to_thread(postgres.start))
        admin = await asyncpg.connect(postgres.url())
        await admin.execute("CREATE DATABASE mlc")
        # time spent in each stored function, for logs/pg-writes.txt (a few % of overhead
        # per call at most; the same in every run, so comparisons stand)
        await admin.execute("ALTER DATABASE mlc SET track_functions = 'pl'")
        await admin.close()
        stack = PipelineStack.on_free_ports(rabbit.url, postgres.url("mlc"), logs)
        stack.broker_admin = BrokerAdmin(node=rabbit.node)
        stack.extra_env = {
            # a reconciliation pass would add Exact calls and CPU of its own
            "MLC_ENRICHER_RECONCILE_SECONDS": "0",
            # quiet hours off (docs/rules): a run at night measures the pipeline, not the clock
            "MLC_ENRICHER_RULES_PATH": str(ROOT / "docs" / "rules"),
            **dict(item.split("=", 1) for item in env),
        }
        yield stack, rabbit, postgres
    finally:
        await asyncio.gather(asyncio.to_thread(rabbit.cleanup), asyncio.to_thread(postgres.cleanup))


async def one_run(number: int, args: argparse.Namespace) -> Run:
    """A fresh private node and cluster, the stack on them, one measurement, then all gone:
    every run starts from the same empty state."""
    run = Run(
        number,
        args.invoices,
        min(args.customers, args.invoices),
        None if args.rate else args.concurrency,
        args.rate,
    )
    logs = LOGS / f"run-{number}"
    async with private_stack(number, logs, args.env) as (stack, rabbit, postgres):
        try:
            await stack.start()
            await measure(stack, rabbit, postgres, run, args, logs)
        finally:
            codes = await stack.stop()
            run.unclean_exits = {n: c for n, c in codes.items() if c not in (0, None)}
            if run.unclean_exits:
                say(f"run {number}: non-zero exits {run.unclean_exits}; logs in {logs}")
    say(
        f"run {number}: {run.invoices_with_sms}/{run.invoices} invoices with an SMS, "
        f"{_fmt(run.throughput_per_s)} /s, latency p50 {_fmt(run.latency_s.get('p50'), 2)} s "
        f"p99 {_fmt(run.latency_s.get('p99'), 2)} s, ingress {_fmt(run.ingress_s, 2)} s, "
        f"{_fmt(run.cpu_ms_per_notification.get('total'), 2)} CPU-ms per notification, "
        f"{run.exact_calls} Exact calls, {run.exact_429s} 429s"
    )
    return run


# the report ----------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def git_commit() -> str:
    """The commit measured, marked ``+changes`` when the work tree differs from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" +changes" if dirty else "")


def summary_rows(runs: list[Run]) -> list[tuple[str, str]]:
    """(figure, median over the runs) pairs, in the order the report shows them."""

    def m(values: Sequence[float | None], digits: int = 1) -> str:
        return _fmt(median(values), digits)

    latency = {q: m([r.latency_s.get(q) for r in runs], 3) for q in ("p50", "p95", "p99")}
    one_sms = [r.invoices_with_sms - r.invoices_with_more_sms for r in runs]
    # how loaded the machine was: a figure near 100 % means the runs were CPU-bound
    used, simulators = [], []
    for r in runs:
        capacity = CORES * r.busy_s if r.busy_s else None
        every = sum(r.cpu_s.values()) + (r.harness_cpu_s or 0.0)
        used.append(100 * every / capacity if capacity else None)
        sims = sum(r.cpu_s.get(name, 0.0) for name in SIMULATORS)
        simulators.append(100 * sims / capacity if capacity else None)
    return [
        ("throughput (notifications / s)", m([r.throughput_per_s for r in runs])),
        ("sustained, 10th to 90th percentile SMS (/ s)", m([r.sustained_per_s for r in runs])),
        ("first webhook -> last SMS (s)", m([r.last_sms_s for r in runs], 2)),
        ("first webhook -> first SMS (s)", m([r.first_sms_s for r in runs], 2)),
        ("latency p50, webhook 200 -> SMS create (s)", latency["p50"]),
        ("latency p95 (s)", latency["p95"]),
        ("latency p99 (s)", latency["p99"]),
        ("ingress: all webhooks acknowledged (s)", m([r.ingress_s for r in runs], 2)),
        (
            "ingress: webhooks / s",
            m([r.invoices / r.ingress_s if r.ingress_s else None for r in runs]),
        ),
        (
            "webhook answers other than 200 (retried)",
            m([sum(r.webhook_retries.values()) for r in runs], 0),
        ),
        (
            "CPU-ms per notification, services + broker + database",
            m([r.cpu_ms_per_notification.get("total") for r in runs], 2),
        ),
        (
            f"CPU ceiling: {CORES} cores / CPU per notification (/ s)",
            m(
                [
                    CORES * 1000 / t if (t := r.cpu_ms_per_notification.get("total")) else None
                    for r in runs
                ]
            ),
        ),
        ("machine's CPU used while busy, simulators and harness included (%)", m(used)),
        ("of which the simulators (%)", m(simulators)),
        ("Exact calls", m([r.exact_calls for r in runs], 0)),
        ("Exact 429s", m([r.exact_429s for r in runs], 0)),
        (
            "SMS (invoices with exactly one)",
            f"{m([r.sms for r in runs], 0)} ({m(one_sms, 0)})",
        ),
    ]


def process_rows(runs: list[Run]) -> list[list[str]]:
    """One row per process: CPU-ms per notification, its share of the total, idle CPU, peak
    RSS and PostgreSQL connections (medians); the simulators and the harness after the
    total, which leaves them out."""
    total = median([r.cpu_ms_per_notification.get("total") for r in runs])
    rows = []
    for name in (*COUNTED, "total", *SIMULATORS, "harness"):
        if name == "harness":
            cpu = median([(r.harness_cpu_s or 0) * 1000 / r.invoices for r in runs])
        else:
            cpu = median([r.cpu_ms_per_notification.get(name) for r in runs])
        share = f"{cpu / total:.0%}" if cpu is not None and total and name in COUNTED else ""
        rows.append(
            [
                f"**{name}**" if name == "total" else name,
                _fmt(cpu, 2),
                share,
                _fmt(median([r.idle_cpu_ms_per_s.get(name) for r in runs]))
                if name not in ("total", "harness")
                else "",
                _fmt(median([r.idle_rss_mib.get(name) for r in runs]))
                if name not in ("total", "harness")
                else "",
                _fmt(median([r.peak_rss_mib.get(name) for r in runs]))
                if name not in ("total", "harness")
                else "",
                _fmt(median([r.pg_connections_max.get(name, 0) for r in runs]), 0)
                if name in SERVICES
                else "",
            ]
        )
    return rows


def parameters(args: argparse.Namespace) -> str:
    mode = f"offered rate {args.rate}/s" if args.rate else f"concurrency {args.concurrency}"
    env = ", ".join(f"`{item}`" for item in args.env) or "none"
    limit = dict(item.split("=", 1) for item in args.env).get(
        "MLC_SIM_EXACT_MINUTELY_LIMIT", os.environ.get("MLC_SIM_EXACT_MINUTELY_LIMIT", "60")
    )
    return (
        f"{args.invoices} invoices for {min(args.customers, args.invoices)} customers, webhooks "
        f"posted by the harness at {mode}, Exact limit {limit} calls a minute, "
        f"{args.repeat} run(s), medians; --env: {env}"
    )


def markdown(runs: list[Run], args: argparse.Namespace) -> str:
    """A section for BENCHMARKS.md."""
    lines = [
        "## The pipeline: throughput and CPU per notification",
        "",
        f"`scripts/bench_pipeline.py` ({parameters(args)}), {datetime.now(UTC):%Y-%m-%d}, "
        f"commit {git_commit()}, on {machine()}.",
        "",
        "Each run starts a private RabbitMQ node and PostgreSQL cluster, the five services and "
        "both simulators. The invoices are issued in the Exact simulator with no subscription, "
        "and the harness posts their signed webhooks to ingress itself. Throughput runs from the "
        "first webhook posted to the Twilio simulator's last SMS create. Latency runs from a "
        "webhook's 200 to the SMS create for its invoice. CPU is utime + stime from /proc, from "
        "the first webhook until the pipeline is idle again, so it includes the status "
        "callbacks and the audit trail. The simulators and the harness are not in the total.",
        "",
        "| figure | median |",
        "|---|---:|",
        *(f"| {name} | {value} |" for name, value in summary_rows(runs)),
        "",
        "| process | CPU-ms / notification | share | idle CPU-ms / s | idle RSS (MiB) "
        "| peak RSS (MiB) | PG connections (max) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *("| " + " | ".join(row) + " |" for row in process_rows(runs)),
        "",
        "PostgreSQL connections are sampled every 2 s from pg_stat_activity, each client port "
        "mapped to the process that holds it. Idle RSS is VmRSS before the first webhook, "
        "peak RSS is VmHWM; for the broker and the database, those of their largest process.",
        "",
        "Rerun: `make bench-pipeline`; `--json FILE` writes every run's raw figures.",
    ]
    return "\n".join(lines)


def plain(runs: list[Run]) -> str:
    width = max(len(name) for name, _ in summary_rows(runs))
    lines = [f"{name:<{width}}  {value}" for name, value in summary_rows(runs)]
    lines.append("")
    lines.append(
        f"{'process':<14}{'CPU-ms/notif':>14}{'share':>7}{'idle ms/s':>11}{'idle MiB':>10}"
        f"{'peak MiB':>10}{'PG conns':>10}"
    )
    for row in process_rows(runs):
        name = row[0].strip("*")
        lines.append(
            f"{name:<14}{row[1]:>14}{row[2]:>7}{row[3]:>11}{row[4]:>10}{row[5]:>10}{row[6]:>10}"
        )
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> list[Run]:
    runs = []
    for number in range(1, args.repeat + 1):
        runs.append(await one_run(number, args))
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not private_infra_available("bench_pipeline"):
        return 2
    if args.profile and py_spy() is None:
        say(
            f"py-spy is not installed: --profile {' '.join(args.profile)} skipped "
            "(pip install py-spy)"
        )
    started = time.monotonic()
    runs = asyncio.run(bench(args))
    say(f"{len(runs)} run(s) in {time.monotonic() - started:.0f} s")
    print()
    print(markdown(runs, args) if args.markdown else plain(runs))
    if args.json:
        document = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": git_commit(),
            "machine": machine(),
            "parameters": {k: v for k, v in vars(args).items() if k not in ("json", "markdown")},
            "runs": [asdict(run) for run in runs],
        }
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r.invoices_with_sms == r.invoices for r in runs) else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--invoices", type=int, default=3000, help="notifications per run")
    parser.add_argument("--customers", type=int, default=100, help="invoices spread over them")
    parser.add_argument(
        "--concurrency", type=int, default=50, help="webhooks in flight (closed loop)"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="webhooks offered per second (open loop)"
    )
    parser.add_argument(
        "--inflight", type=int, default=1000, help="with --rate: most webhooks waiting at once"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs (medians reported)")
    parser.add_argument("--json", help="also write every run's raw figures to this file")
    parser.add_argument("--markdown", action="store_true", help="print a BENCHMARKS.md section")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between SMS counts")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle CPU measured")
    parser.add_argument(
        "--settle", type=float, default=60.0, help="most seconds to wait for idle after"
    )
    parser.add_argument("--timeout", type=float, default=0, help="seconds per run (0: auto)")
    parser.add_argument(
        "--profile",
        action="append",
        choices=SERVICES + SIMULATORS,
        help="record this process with py-spy (when installed) into the run's log folder "
        "(repeatable)",
    )
    parser.add_argument(
        "--profile-raw",
        action="store_true",
        help="write the profile as collapsed stacks (text) instead of a flame graph",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="MLC_NAME=VALUE",
        help="a setting for every component of every run (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    if args.invoices < 1 or args.customers < 1 or args.concurrency < 1 or args.repeat < 1:
        parser.error("--invoices, --customers, --concurrency and --repeat must be positive")
    return args


if __name__ == "__main__":
    sys.exit(main())
