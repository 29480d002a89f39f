"""The short chaos run (``scripts/chaos.py``) as part of the suite: 300 invoices while every
service is SIGKILLed in turn, the broker and the database restart, connections are cut and
both vendors misbehave. It proves nothing is lost, nothing is sent twice and no service needs
a hand to come back; ``make chaos`` runs 1,000 and ``make chaos-long`` 10,000."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.testing.postgres import PrivatePostgres
from common.testing.rabbit import PrivateRabbit

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1600)
def test_a_short_chaos_run_loses_nothing_and_sends_nothing_twice(tmp_path):
    if not (PrivateRabbit.available() and PrivatePostgres.available()):
        raise pytest.UsageError("the chaos run needs rabbitmq-server and PostgreSQL binaries")
    figures_file = tmp_path / "chaos.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--invoices", "300",
         "--customers", "30", "--batch", "20", "--json", str(figures_file)],
        capture_output=True,
        text=True,
        timeout=1500,
    )  # fmt: skip
    assert figures_file.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(figures_file.read_text())
    print(json.dumps(figures))  # the figures, in the test's output
    assert figures["lost"] == []
    assert figures["duplicated"] == []
    assert figures["died_unexpectedly"] == []
    assert figures["failed_starts"] == []
    assert figures["delivered"] + figures["failed_with_reason"] + figures["parked"] == 300
    assert set(figures["kills"]) == {"ingress", "enricher", "dispatcher", "auditor", "token-keeper"}
    assert {"broker_restart", "database_restart", "broker_cut"} <= set(figures["faults"])
    assert run.returncode == 0
