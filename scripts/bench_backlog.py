#!/usr/bin/env python3
"""Benchmark: a backlog drained. The dispatcher is stopped while ``--invoices`` notifications
queue, then started: how long it takes to drain, and the peak rate of requests Twilio gets.

Each run starts a private RabbitMQ node and PostgreSQL cluster and the whole stack, stops
the dispatcher, posts one signed webhook per invoice and waits until every send command is
queued on ``dispatcher.sends``: until the auditor, which gets a copy of each command from
the same publish, has recorded them all (the queue's depth counts AMQP messages, and
commands published together travel as one, ADR 0010). Then it starts the dispatcher and
polls the Twilio simulator's request counter every ``--poll`` seconds: the drain time runs
from the dispatcher's start to the last SMS; the peak rate is the highest count over any
window of at least one second. With ``--env MLC_DISPATCHER_TWILIO_RATE=R`` the peak must
stay within R (plus its burst); the report says whether it did. There are no assertions: it reports.

    .venv/bin/python scripts/bench_backlog.py [--invoices 10000] [--env MLC_NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass

import asyncpg
import httpx
from bench_common import median
from bench_invoicing_run import counter, prepare, say
from bench_pipeline import (
    ROOT,
    drive,
    git_commit,
    machine,
    private_infra_available,
    private_stack,
    signed_webhooks,
)

from common.testing.stack import PipelineStack
from sim_exact.client import SimExactAdmin

LOGS = ROOT / ".mlc" / "bench-backlog"


@dataclass
class Run:
    number: int
    queued_s: float = 0.0
    drain_s: float = 0.0
    drain_per_s: float = 0.0
    peak_per_s: float = 0.0
    sent: int = 0


async def _queued(database_url: str) -> int:
    """Send commands published: each reached the auditor's queue and ``dispatcher.sends``
    with the same confirm, and the auditor has recorded it."""
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval("SELECT count(*) FROM audit.notifications"))
    finally:
        await connection.close()


async def _sms(http: httpx.AsyncClient, stack: PipelineStack) -> float:
    return await counter(
        http,
        stack.url("sim-twilio"),
        "mlc_sim_twilio_requests_total",
        "Messages.json",
        'method="POST"',
        'status="201"',
    )


def peak_rate(samples: list[tuple[float, float]], window: float = 1.0) -> float:
    """The highest count per second over any span of at least ``window`` seconds between two
    samples (time, cumulative count)."""
    best = 0.0
    for i, (t0, c0) in enumerate(samples):
        for t1, c1 in samples[i + 1 :]:
            if t1 - t0 >= window:
                best = max(best, (c1 - c0) / (t1 - t0))
                break
    return best


async def one_run(number: int, args: argparse.Namespace) -> Run:
    run = Run(number)
    async with private_stack(number, LOGS / f"run-{number}", args.env) as (stack, _, postgres):
        try:
            await stack.start()
            await stack.kill("dispatcher")  # stopped before any work: nothing in flight
            await measure(stack, postgres.url("mlc"), run, args)
        finally:
            await stack.stop()
    say(
        f"run {number}: {run.sent} SMS drained in {run.drain_s:.1f} s "
        f"({run.drain_per_s:.0f}/s), peak {run.peak_per_s:.0f}/s"
    )
    return run


async def measure(
    stack: PipelineStack, database_url: str, run: Run, args: argparse.Namespace
) -> None:
    async with (
        SimExactAdmin(stack.url("sim-exact"), timeout=300) as exact,
        httpx.AsyncClient(timeout=10) as http,
    ):
        ids = await prepare(exact, stack.url("sim-exact"), args.invoices, args.customers)
        await exact.issue_invoices(ids)  # nothing subscribed: the harness posts the webhooks
        client_id = str((await exact.seed())["client_id"])
        url, bodies = signed_webhooks(stack, client_id, ids)
        say(f"run {run.number}: {len(bodies)} webhooks with the dispatcher stopped")
        started = time.monotonic()
        await drive(url, bodies, concurrency=50, rate=None, inflight=0)
        while (queued := await _queued(database_url)) < args.invoices:
            if time.monotonic() - started > args.timeout:
                raise RuntimeError(f"only {queued} of {args.invoices} sends queued")
            await asyncio.sleep(1.0)
        run.queued_s = round(time.monotonic() - started, 1)
        say(f"run {run.number}: {queued} sends queued after {run.queued_s} s; dispatcher starts")

        before = await _sms(http, stack)
        t0 = time.monotonic()
        await stack.start_one("dispatcher")
        samples = [(t0, 0.0)]
        while samples[-1][1] < args.invoices and time.monotonic() - t0 < args.timeout:
            await asyncio.sleep(args.poll)
            samples.append((time.monotonic(), await _sms(http, stack) - before))
        last = next(t for t, c in samples if c >= samples[-1][1])
        run.sent = int(samples[-1][1])
        run.drain_s = round(last - t0, 2)
        run.drain_per_s = round(run.sent / run.drain_s, 1) if run.drain_s else 0.0
        run.peak_per_s = round(peak_rate(samples), 1)


def markdown(runs: list[Run], args: argparse.Namespace) -> str:
    env = dict(item.split("=", 1) for item in args.env)
    rate = float(env.get("MLC_DISPATCHER_TWILIO_RATE", "0") or 0)
    burst = int(env.get("MLC_DISPATCHER_TWILIO_BURST", "10"))
    peak = median([r.peak_per_s for r in runs]) or 0.0
    within = (
        "no rate configured (only the concurrency limit)"
        if not rate
        else f"{'yes' if max(r.peak_per_s for r in runs) <= rate + burst else 'NO'} "
        f"(rate {rate:g}/s, burst {burst})"
    )
    return "\n".join(
        [
            f"`scripts/bench_backlog.py` ({args.invoices} invoices for {args.customers} "
            f"customers queued with the dispatcher stopped; {len(runs)} run(s), medians; --env: "
            f"{', '.join(f'`{e}`' for e in args.env) or 'none'}), {time.strftime('%Y-%m-%d')}, "
            f"commit {git_commit()}, {machine()}.",
            "",
            "| figure | median |",
            "|---|---:|",
            f"| sends queued (s) | {median([r.queued_s for r in runs]):.1f} |",
            f"| dispatcher start -> last SMS (s) | {median([r.drain_s for r in runs]):.1f} |",
            f"| drain rate (SMS / s) | {median([r.drain_per_s for r in runs]):.1f} |",
            f"| peak Twilio request rate, any 1 s window (/ s) | {peak:.1f} |",
            f"| peak within the configured pacing | {within} |",
            f"| SMS | {median([r.sent for r in runs]):.0f} |",
        ]
    )


async def bench(args: argparse.Namespace) -> list[Run]:
    return [await one_run(n, args) for n in range(1, args.repeat + 1)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not private_infra_available("bench_backlog"):
        return 2
    runs = asyncio.run(bench(args))
    print(markdown(runs, args))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--invoices", type=int, default=10000)
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between SMS counts")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per phase")
    parser.add_argument("--env", action="append", default=[], metavar="MLC_NAME=VALUE")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
