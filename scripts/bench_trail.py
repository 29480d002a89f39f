#!/usr/bin/env python3
"""Benchmark: the audit trail alone, without the broker.

Each run starts a private PostgreSQL cluster and records ``--notifications`` notifications
through ``PostgresTrail`` sharing transactions as the auditor service does (``GroupCommit``),
``--concurrency`` at a time: per notification its send command, its ``notification.sent`` and
two provider statuses (sent, delivered), as a Twilio SMS leaves them. It reports the auditor's
CPU (this process) and the database's (its processes, from /proc) per notification, and
notifications recorded per second. What a delivery costs around it (AMQP, decoding) is in
the pipeline benchmark; this one isolates the trail's SQL, so a change to it shows clearly
on a noisy machine. There are no assertions: it reports.

    .venv/bin/python scripts/bench_trail.py [--repeat 3] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from bench_common import ProcessTable, median
from bench_invoicing_run import say
from bench_pipeline import git_commit, machine

from auditor import schema
from auditor.adapters.trail import PostgresTrail
from auditor.personal import PersonalData
from common import db
from common.contracts import (
    NotificationSent,
    Recipient,
    SendNotification,
    SourceDocument,
    TwilioStatus,
)
from common.crypto import generate_key
from common.groupcommit import GroupCommit
from common.testing.postgres import PrivatePostgres

#: A test number (the Netherlands' mobile range); the trail keeps it hashed and masked.
MOBILE = "+31612345678"


@dataclass
class Run:
    number: int
    client_ms: float
    postgres_ms: float
    per_s: float


async def _notification(trail: PostgresTrail, number: int) -> None:
    sid = "SM" + uuid.uuid4().hex
    command = SendNotification(
        notification_id=uuid.uuid4(),
        idempotency_key=uuid.uuid4().hex,
        channel="sms",
        recipient=Recipient(address=MOBILE),
        template="sms_invoice_issued",
        content=f"Invoice {number}: 121.00 due",
        source=SourceDocument(
            connection_id="bench",
            division=1,
            entity="SalesInvoices",
            id=uuid.uuid4(),
            number=str(number),
        ),
        fact="invoice_issued",
    )
    await trail.requested(command)
    sent = NotificationSent(
        notification_id=command.notification_id, attempt=1, channel="sms", provider_id=sid
    )
    await trail.outcome(sent.message_id(), sent)
    for status in ("sent", "delivered"):
        await trail.status(
            TwilioStatus(
                provider_id=sid,
                status=status,
                raw={"MessageSid": sid, "MessageStatus": status, "To": MOBILE},
                received_at=datetime.now(UTC),
                connection_id="bench",
            )
        )


async def one_run(number: int, args: argparse.Namespace) -> Run:
    postgres = PrivatePostgres()
    say(f"run {number}: starting a private PostgreSQL cluster")
    await asyncio.to_thread(postgres.start)
    try:
        data = PersonalData(generate_key())
        async with db.pool(postgres.url(), max_size=2) as pool:
            await schema.migrate(pool, data)
            trail = PostgresTrail(pool, data=data, group=GroupCommit(pool, max_batch=100))
            # the server's whole tree: backends (exited ones too, reaped by the postmaster),
            # the WAL writer and the checkpointer
            postmaster = [int((postgres.data / "postmaster.pid").read_text().split()[0])]
            await asyncio.gather(*(_notification(trail, n) for n in range(args.concurrency)))
            slots = asyncio.Semaphore(args.concurrency)

            async def paced(n: int) -> None:
                async with slots:
                    await _notification(trail, n)

            say(f"run {number}: {args.notifications} notifications, {args.concurrency} at a time")
            server = ProcessTable().cpu_seconds({"postgres": postmaster})["postgres"]
            client, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(paced(n) for n in range(args.notifications)))
            wall = time.perf_counter() - wall
            client = time.process_time() - client
            server = ProcessTable().cpu_seconds({"postgres": postmaster})["postgres"] - server
    finally:
        await asyncio.to_thread(postgres.cleanup)
    n = args.notifications
    run = Run(number, 1000 * client / n, 1000 * server / n, n / wall)
    say(
        f"run {number}: auditor {run.client_ms:.3f} CPU-ms, PostgreSQL {run.postgres_ms:.3f} "
        f"CPU-ms per notification, {run.per_s:.0f} notifications/s"
    )
    return run


def markdown(runs: list[Run], args: argparse.Namespace) -> str:
    return "\n".join(
        [
            f"`scripts/bench_trail.py` ({args.notifications} notifications, "
            f"{args.concurrency} at a time; {len(runs)} run(s), medians), "
            f"{datetime.now(UTC):%Y-%m-%d}, commit {git_commit()}, {machine()}.",
            "",
            "| figure | median |",
            "|---|---:|",
            f"| auditor CPU-ms per notification | {median([r.client_ms for r in runs]):.3f} |",
            f"| PostgreSQL CPU-ms per notification | {median([r.postgres_ms for r in runs]):.3f} |",
            f"| notifications recorded / s | {median([r.per_s for r in runs]):.0f} |",
        ]
    )


async def bench(args: argparse.Namespace) -> list[Run]:
    return [await one_run(n, args) for n in range(1, args.repeat + 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--notifications", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a BENCHMARKS.md section")
    args = parser.parse_args()
    if not PrivatePostgres.available():
        print("bench_trail: PostgreSQL server binaries (initdb, pg_ctl) not found", file=sys.stderr)
        return 2
    runs = asyncio.run(bench(args))
    print(markdown(runs, args) if args.markdown else runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
