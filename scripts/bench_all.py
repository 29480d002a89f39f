#!/usr/bin/env python3
"""Run every benchmark and write its figures into BENCHMARKS.md (``make bench``).

Each benchmark runs as its own process on a private RabbitMQ node and PostgreSQL cluster
(see its --help); what it prints, apart from its progress lines (``==> ...``), replaces the
text between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in BENCHMARKS.md. The prose
around the markers (what the figures mean, what is left) is kept as it is.

    .venv/bin/python scripts/bench_all.py [--only pipeline,ingress,trail,backlog,economy]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "BENCHMARKS.md"

#: name -> the benchmark's command line (after the interpreter); medians of 3 runs where a
#: run is short enough, one run of the 10,000-send backlog.
BENCHES: dict[str, list[str]] = {
    "pipeline": ["scripts/bench_pipeline.py", "--repeat", "3", "--markdown"],
    "pipeline-100": ["scripts/bench_pipeline.py", "--repeat", "3", "--rate", "100", "--markdown"],
    "pipeline-500": ["scripts/bench_pipeline.py", "--repeat", "3", "--rate", "500", "--markdown"],
    "ingress": ["scripts/bench_ingress.py", "--repeat", "3", "--markdown"],
    "trail": ["scripts/bench_trail.py", "--repeat", "3", "--markdown"],
    "backlog": ["scripts/bench_backlog.py", "--env", "MLC_DISPATCHER_TWILIO_RATE=100"],
    # the naive configuration is paced by Exact's limit (5 minutes a run): run it alone with
    # scripts/bench_invoicing_run.py --only naive
    "economy": ["scripts/bench_invoicing_run.py", "--repeat", "3", "--only", "economical"],
    "economy-1000": [
        "scripts/bench_invoicing_run.py",
        "--repeat",
        "3",
        "--only",
        "economical",
        "--customers",
        "1000",
    ],
}


def run(name: str) -> str:
    """Run one benchmark, echoing its progress; returns what it reported."""
    command = [sys.executable, *BENCHES[name]]
    print(f"==> {name}: {' '.join(BENCHES[name])}", flush=True)
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        kept = []
        for line in process.stdout or ():
            if line.startswith("==> "):
                print(line, end="", flush=True)
            else:
                kept.append(line)
    if process.returncode != 0:
        raise SystemExit(f"bench_all: {name} failed with exit status {process.returncode}")
    # the section's own heading is this file's, above the markers
    return "".join(line for line in kept if not line.startswith("## ")).strip()


def replace(document: str, name: str, section: str) -> str:
    """``document`` with the text between the markers of ``name`` replaced."""
    pattern = re.compile(
        rf"(<!-- bench:{re.escape(name)} -->\n).*?(\n<!-- /bench:{re.escape(name)} -->)", re.S
    )
    if not pattern.search(document):
        raise SystemExit(f"bench_all: BENCHMARKS.md has no <!-- bench:{name} --> markers")
    return pattern.sub(lambda m: m.group(1) + section + m.group(2), document, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--only", default=",".join(BENCHES), help="comma-separated: " + ", ".join(BENCHES)
    )
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    for name in names:
        section = run(name)
        REPORT.write_text(replace(REPORT.read_text(), name, section))
        print(f"==> {name}: written to {REPORT.name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
