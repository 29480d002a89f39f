#!/usr/bin/env python3
"""Benchmark: ingress alone, signed Exact webhooks acknowledged after the broker's confirm.

Each run starts a private RabbitMQ node and PostgreSQL cluster, then only what ingress needs:
the Exact simulator (token-keeper reads the connection from it), token-keeper (it hands ingress
the webhook secret, once) and ingress. The work queues are declared, so every webhook ends in
the enricher's quorum queue as in production, and nothing consumes it. This harness is the
load generator, a separate process from ingress. Two phases per run:

- saturation: ``--webhooks`` signed webhooks, ``--concurrency`` in flight: acknowledged per
  second, and CPU-ms per webhook of ingress and of the broker (from /proc);
- fixed rate: ``--rate`` webhooks offered per second for ``--seconds``: latency percentiles
  from each webhook's scheduled send to its 200.

Every webhook comes from one client (the harness), and ingress limits each source to
``MLC_INGRESS_RATE_LIMIT_PER_SECOND`` (1,000/s after a burst of 10,000) with 429s: this
benchmark lifts that limit (``--env`` can set it back) so that it measures the process, not
the limit.

There are no assertions: it reports.

    .venv/bin/python scripts/bench_ingress.py [--repeat 3] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass, field

import aio_pika
from bench_common import ProcessTable, median, percentile
from bench_invoicing_run import say
from bench_pipeline import (
    ROOT,
    Drive,
    _rabbit_pids,
    drive,
    git_commit,
    machine,
    private_infra_available,
    private_stack,
    signed_webhooks,
)

from common import topology
from common.settings import SIMULATOR_DEFAULTS
from common.testing.rabbit import PrivateRabbit
from common.testing.stack import PipelineStack

LOGS = ROOT / ".mlc" / "bench-ingress"
#: What ingress needs running beside it, in start order.
PARTS = ("sim-exact", "token-keeper", "ingress")
#: the per-source limit the benchmark runs with: far above what one process acknowledges
UNLIMITED = 1_000_000


@dataclass
class Run:
    number: int
    acked_per_s: float = 0.0
    cpu_ms_per_webhook: dict[str, float] = field(default_factory=dict)
    rate: float = 0.0
    achieved_rate: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    not_200: int = 0


def _latencies(result: Drive, rate: float) -> list[float]:
    """Milliseconds from each webhook's scheduled send (the open loop's clock) to its 200."""
    return [
        (acked - (result.started + index / rate)) * 1000
        for index, acked in enumerate(result.acked)
        if acked is not None
    ]


async def one_run(number: int, args: argparse.Namespace) -> Run:
    run = Run(number, rate=args.rate)
    env = [f"MLC_INGRESS_RATE_LIMIT_PER_SECOND={UNLIMITED}", *args.env]  # a later one wins
    async with private_stack(number, LOGS / f"run-{number}", env) as (stack, rabbit, _):
        try:
            await stack.create_users()
            broker = await aio_pika.connect(rabbit.url)
            await topology.declare(await broker.channel())  # the enricher's queue receives
            await broker.close()
            for name in PARTS:
                await stack.start_one(name)
            await measure(stack, rabbit, run, args)
        finally:
            await stack.stop()
    say(
        f"run {number}: {run.acked_per_s:.0f} webhooks/s acknowledged, "
        f"ingress {run.cpu_ms_per_webhook.get('ingress', 0):.3f} CPU-ms each; at "
        f"{run.rate:.0f}/s offered p50 {run.latency_ms.get('p50', 0):.1f} ms "
        f"p99 {run.latency_ms.get('p99', 0):.1f} ms"
    )
    return run


async def measure(
    stack: PipelineStack, rabbit: PrivateRabbit, run: Run, args: argparse.Namespace
) -> None:
    client_id = str(SIMULATOR_DEFAULTS["exact_client_id"])
    url, warm = signed_webhooks(stack, client_id, [str(uuid.uuid4()) for _ in range(200)])
    await drive(url, warm, concurrency=20, rate=None, inflight=20)  # the secret is fetched
    roots = {"ingress": [stack.processes["ingress"].pid], "rabbitmq": _rabbit_pids(rabbit)}

    _, bodies = signed_webhooks(stack, client_id, [str(uuid.uuid4()) for _ in range(args.webhooks)])
    say(f"run {run.number}: {len(bodies)} webhooks, {args.concurrency} at a time")
    before = ProcessTable().cpu_seconds(roots)
    result = await drive(url, bodies, concurrency=args.concurrency, rate=None, inflight=0)
    elapsed = max(a for a in result.acked if a is not None) - result.started
    after = ProcessTable().cpu_seconds(roots)
    acked = sum(1 for a in result.acked if a is not None)
    run.acked_per_s = round(acked / elapsed, 1)
    run.cpu_ms_per_webhook = {
        name: round((after[name] - before[name]) * 1000 / acked, 3) for name in roots
    }
    run.not_200 = sum(result.retries.values()) + result.failed

    count = int(args.rate * args.seconds)
    _, bodies = signed_webhooks(stack, client_id, [str(uuid.uuid4()) for _ in range(count)])
    say(f"run {run.number}: {count} webhooks at {args.rate:.0f}/s")
    result = await drive(url, bodies, concurrency=0, rate=args.rate, inflight=args.inflight)
    latencies = _latencies(result, args.rate)
    last = max(a for a in result.acked if a is not None)
    run.achieved_rate = round(len(latencies) / (last - result.started), 1)
    run.latency_ms = {
        f"p{q}": round(percentile(latencies, q / 100) or 0.0, 1) for q in (50, 90, 99)
    }
    run.latency_ms["max"] = round(max(latencies), 1)
    run.not_200 += sum(result.retries.values()) + result.failed


def markdown(runs: list[Run], args: argparse.Namespace) -> str:
    def m(values: list[float], digits: int = 1) -> str:
        found = median(values)
        return "-" if found is None else f"{found:.{digits}f}"

    lines = [
        f"`scripts/bench_ingress.py` ({args.webhooks} webhooks at concurrency "
        f"{args.concurrency}, then {args.rate:.0f}/s offered for {args.seconds:.0f} s; "
        f"{len(runs)} run(s), medians), {time.strftime('%Y-%m-%d')}, commit {git_commit()}, "
        f"{machine()}.",
        "",
        "| figure | median |",
        "|---|---:|",
        f"| webhooks acknowledged / s (saturation) | {m([r.acked_per_s for r in runs])} |",
        *(
            f"| CPU-ms per webhook, {label} | {m([r.cpu_ms_per_webhook[name] for r in runs], 3)} |"
            for name, label in (("ingress", "ingress"), ("rabbitmq", "RabbitMQ"))
        ),
        f"| offered rate (/ s) | {args.rate:.0f} |",
        f"| achieved rate (/ s) | {m([r.achieved_rate for r in runs])} |",
    ]
    for q in ("p50", "p90", "p99", "max"):
        lines.append(
            f"| latency {q} at the offered rate (ms) | {m([r.latency_ms[q] for r in runs])} |"
        )
    lines.append(f"| answers other than 200 | {sum(r.not_200 for r in runs)} |")
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> list[Run]:
    return [await one_run(n, args) for n in range(1, args.repeat + 1)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not private_infra_available("bench_ingress"):
        return 2
    runs = asyncio.run(bench(args))
    print(markdown(runs, args) if args.markdown else "\n".join(map(str, runs)))
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--webhooks", type=int, default=20000, help="saturation phase")
    parser.add_argument("--concurrency", type=int, default=100, help="saturation phase")
    parser.add_argument("--rate", type=float, default=2000.0, help="fixed-rate phase (/s)")
    parser.add_argument("--seconds", type=float, default=10.0, help="fixed-rate phase")
    parser.add_argument("--inflight", type=int, default=500, help="most waiting at once")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a BENCHMARKS.md section")
    parser.add_argument("--env", action="append", default=[], metavar="MLC_NAME=VALUE")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
