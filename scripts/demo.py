"""The whole pipeline on the built-in simulators: an invoice issued in Exact becomes one SMS,
an invoice to a customer invoiced by email one email, and a big export order one call.

Starts the two simulators and the five services (each its own process, configured only by
MLC_ variables), issues a sample sales invoice in the Exact simulator, and shows the SMS at
the Twilio simulator, its delivery status and the invoice's audit trail; then the same for an
email (delivered, then opened) and for an urgent call (answered by a person). Keeps running
until Ctrl-C unless --once. Each run starts from a clean state: a fresh RabbitMQ vhost and
database (``mlc-demo``), since the simulators start from a clean slate too; the components an
interrupted run left behind stopped (their process ids are kept in .mlc/demo.pids), and new
logs. A component left over would answer in the new one's place with its old state (a sim
whose token chain had moved on: "Old refresh token used"). When a step fails, the demo says
what did not happen, what the logs say went wrong, and where they are: .mlc/logs/<component>.log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from auditor.cli import format_trail
from common.logging import mask_text
from common.testing import eventually
from common.testing.infra import (
    DEFAULT_AMQP,
    DEFAULT_DB,
    InfraUnavailable,
    amqp_answers,
    create_vhost,
    db_answers,
    delete_vhost,
    find_infra,
    fresh_database,
)
from common.testing.stack import COMPONENTS, PipelineStack
from sim_exact.client import SimExactAdmin
from sim_twilio.client import SimTwilioAdmin

ROOT = Path(__file__).resolve().parent.parent
DEMO = "mlc-demo"
#: Where the demo leaves the auditor's admin token for ``mlc-audit`` (readable by you only).
TOKEN_FILE = ROOT / ".mlc" / "auditor-admin-token"
LOGS = ROOT / ".mlc" / "logs"
#: The process id of each component of the running demo, so the next run can stop the ones an
#: interrupted run left behind.
PIDS_FILE = ROOT / ".mlc" / "demo.pids"
#: What a failure report quotes of a log line, besides its event.
_DETAIL_KEYS = ("error", "reason", "error_code", "outcome", "dependency", "loop", "connection_id")


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def auditor_headers(stack: PipelineStack) -> dict[str, str]:
    """The auditor answers nothing without a token: the one the stack gave it."""
    return {"Authorization": f"Bearer {stack.auditor_admin_token}"}


def keep_token(stack: PipelineStack) -> None:
    """Leave the stack's auditor token in TOKEN_FILE (mode 600) rather than on the screen."""
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(stack.auditor_admin_token)


def stop_leftovers() -> list[str]:
    """Stop the components an earlier demo run started and did not stop (it was killed, or
    interrupted twice); only processes still running that run's console script. Returns what
    was stopped."""
    try:
        recorded = json.loads(PIDS_FILE.read_text())
    except (OSError, ValueError):
        return []
    scripts = dict(COMPONENTS)
    stopped = []
    for name, pid in recorded.items():
        try:
            command = Path(f"/proc/{int(pid)}/cmdline").read_bytes()
        except OSError:
            continue  # gone
        if name in scripts and scripts[name].encode() in command:
            os.kill(int(pid), signal.SIGTERM)
            stopped.append((name, int(pid)))
    deadline = time.monotonic() + 15
    for _name, pid in stopped:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
    PIDS_FILE.unlink(missing_ok=True)
    return [name for name, _ in stopped]


def keep_pids(stack: PipelineStack) -> None:
    PIDS_FILE.parent.mkdir(parents=True, exist_ok=True)
    PIDS_FILE.write_text(json.dumps({n: p.pid for n, p in stack.processes.items()}))


def fresh_logs() -> None:
    """One run's logs only, so that what they say is about this run."""
    LOGS.mkdir(parents=True, exist_ok=True)
    for log in LOGS.glob("*.log"):
        log.unlink()


def log_problems(name: str, limit: int = 3) -> list[str]:
    """The last warnings and errors of a component's log, one line each (the log pipeline
    masked them already), and any line that is not JSON (a one-line refusal to start)."""
    try:
        lines = (LOGS / f"{name}.log").read_text(errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            if line.strip() and not line.startswith(" "):
                found.append(line.strip()[:300])
            continue
        if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
            details = ", ".join(f"{k}={entry[k]}" for k in _DETAIL_KEYS if entry.get(k))
            found.append(f"{entry.get('event')}" + (f" ({details})" if details else ""))
    return found[-limit:]


async def explain(stack: PipelineStack, exc: BaseException) -> None:
    """Say what failed, what each started component reports, and where the logs are."""
    what = (str(exc).splitlines() or [repr(exc)])[0]
    print(f"ml-connector demo: failed: {what}", file=sys.stderr)
    async with httpx.AsyncClient(timeout=2) as http:
        for name, _ in COMPONENTS:
            if name not in stack.processes:
                continue  # never started
            ready = await _readiness(http, stack.url(name))
            problems = log_problems(name)
            if ready != "ready" or problems:
                print(f"  {name}: {ready}", file=sys.stderr)
                for problem in problems:
                    print(f"    {problem}", file=sys.stderr)
    print(f"  logs: {LOGS.relative_to(ROOT)}/<component>.log", file=sys.stderr)


async def _readiness(http: httpx.AsyncClient, url: str) -> str:
    """``ready``, ``not ready`` with the checks that failed, or ``not answering``."""
    try:
        answer = await http.get(f"{url}/readyz")
    except httpx.TransportError:
        return "not answering"
    if answer.status_code == 200:
        return "ready"
    try:
        failed = answer.json().get("failed")
    except ValueError:
        failed = None
    return f"not ready ({failed or f'HTTP {answer.status_code}'})"


async def show_one_invoice(stack: PipelineStack) -> None:
    async with (
        SimExactAdmin(stack.url("sim-exact")) as exact,
        SimTwilioAdmin(stack.url("sim-twilio")) as twilio,
    ):
        invoice = await exact.create_invoice(amount=1210.00, description="Monthly bread supply")
        invoice_id = invoice["InvoiceID"]
        say(f"Exact: draft sales invoice {invoice_id} created (a draft sends nothing)")
        await exact.edit_invoice(invoice_id, Description="Monthly bread supply, November")
        issued = await exact.issue_invoice(invoice_id)
        number = issued["InvoiceNumber"]
        say(f"Exact: invoice {number} issued; webhooks go to ingress")
        messages = await eventually(
            twilio.messages,
            until=lambda m: len(m) >= 1,
            timeout=60,
            what="an SMS at the Twilio simulator",
        )
        sms = messages[0]
        say(f"Twilio: SMS {sms['sid']} to {mask_text(sms['to'])}: {sms['body']!r}")
        trail_url = f"{stack.url('auditor')}/trail"
        async with httpx.AsyncClient() as http:

            async def trail() -> list[dict[str, object]]:
                answer = await http.get(
                    trail_url, params={"number": str(number)}, headers=auditor_headers(stack)
                )
                return list(answer.json()["notifications"])

            entries = await eventually(
                trail,
                until=lambda t: bool(t) and t[0].get("delivery_status") == "delivered",
                timeout=60,
                what="the delivered status in the audit trail",
            )
        say(f"Audit trail of invoice {number}:")
        print(format_trail(entries), flush=True)
        say(
            f"Same trail any time: MLC_AUDITOR_ADMIN_TOKEN=$(cat {TOKEN_FILE.relative_to(ROOT)})"
            f" .venv/bin/mlc-audit trail {number} --url {stack.url('auditor')}"
        )


async def trail_of(stack: PipelineStack, number: str, until: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:

        async def trail() -> list[dict[str, Any]]:
            answer = await http.get(
                f"{stack.url('auditor')}/trail",
                params={"number": number},
                headers=auditor_headers(stack),
            )
            return list(answer.json()["notifications"])

        return await eventually(trail, until=until, timeout=60, what=f"the trail of {number}")


def on(channel: str, status: str) -> Any:
    return lambda t: any(e["channel"] == channel and e.get("delivery_status") == status for e in t)


async def show_email_and_call(stack: PipelineStack) -> None:
    async with (
        SimExactAdmin(stack.url("sim-exact")) as exact,
        SimTwilioAdmin(stack.url("sim-twilio")) as twilio,
    ):
        # A customer invoiced by email (InvoicingMethod 2): the invoice goes by email; the
        # simulated mailbox opens it.
        account = await exact.create_account(
            Name="Kaasmakerij De Graaf B.V.", Country="NL", Language="NL", InvoicingMethod=2
        )
        await exact.create_contact(
            Account=account["ID"],
            FirstName="Anouk",
            Email="anouk@kaasmakerij.example",
            Mobile="+31687654321",
            IsMainContact=True,
            Country="NL",
        )
        await twilio.inject(
            kind="final_status", api="mail", to="anouk@kaasmakerij.example", status="read"
        )
        draft = await exact.create_invoice(amount=480.50, account_id=account["ID"])
        number = str((await exact.issue_invoice(draft["InvoiceID"]))["InvoiceNumber"])
        say(f"Exact: invoice {number} issued to a customer invoiced by email")
        entries = await trail_of(stack, number, on("email", "open"))
        mail = next(m for m in await twilio.emails() if m["to"] == ["anouk@kaasmakerij.example"])
        say(f"SendGrid: email {mail['message_id']} {mail['subject']!r}: delivered, then opened")
        print(format_trail(entries), flush=True)

        # A big order in foreign currency: the example rules call the person who ordered.
        order = await exact.create(
            "SalesOrders",
            OrderedBy=account["ID"],
            InvoiceTo=account["ID"],
            AmountFC=32000.0,
            AmountDC=29400.0,
            Currency="USD",
            ApprovalStatus=2,
        )
        say(f"Exact: export order {order['OrderNumber']} for $32,000 approved")
        entries = await trail_of(stack, str(order["OrderNumber"]), on("voice", "answered"))
        call = next(c for c in await twilio.calls() if c["to"] == "+31687654321")
        say(f"Twilio: call {call['sid']} to {mask_text(call['to'])}, answered by a person")
        print(format_trail(entries), flush=True)


async def main(once: bool) -> int:
    amqp = os.environ.get("MLC_AMQP_URL", DEFAULT_AMQP)
    database = os.environ.get("MLC_DATABASE_URL", DEFAULT_DB).rsplit("/", 1)[0] + "/postgres"
    if not (await amqp_answers(amqp) and await db_answers(database)):
        print(
            "ml-connector demo: RabbitMQ or PostgreSQL is not reachable; run `make services` "
            "or set MLC_AMQP_URL / MLC_DATABASE_URL",
            file=sys.stderr,
        )
        return 1
    for name in stop_leftovers():
        say(f"stopped {name}, left running by an earlier demo")
    fresh_logs()
    with ExitStack() as resources:
        try:
            infra = await find_infra(resources)
            delete_vhost(infra, DEMO)  # left over by an interrupted run
            vhost_url = create_vhost(infra, DEMO)
        except InfraUnavailable as exc:
            print(f"ml-connector demo: {exc}", file=sys.stderr)
            return 1
        database_url = await fresh_database(infra, DEMO.replace("-", "_"))
        stack = PipelineStack(vhost_url, database_url, LOGS)
        keep_token(stack)
        # The example rules (docs/rules) are the default set with quiet hours off, so the demo
        # shows its SMS at any hour; an MLC_ENRICHER_RULES_PATH of your own wins.
        stack.extra_env.setdefault(
            "MLC_ENRICHER_RULES_PATH",
            os.environ.get("MLC_ENRICHER_RULES_PATH", str(ROOT / "docs" / "rules")),
        )
        say("starting 2 simulators and 5 services (logs in .mlc/logs/)")
        failed = False
        try:
            try:
                await stack.create_users()
                for name, _ in COMPONENTS:
                    await stack.start_one(name)
                    keep_pids(stack)
                for name in stack.ports:
                    say(f"{name:13} {stack.url(name)}  (/readyz, /metrics)")
                await show_one_invoice(stack)
                await show_email_and_call(stack)
            except (AssertionError, RuntimeError, httpx.HTTPError) as exc:
                failed = True
                await explain(stack, exc)
                return 1
            if not once:
                say("running; Ctrl-C stops everything")
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
        finally:
            codes = await stack.stop()
            PIDS_FILE.unlink(missing_ok=True)
            unclean = {n: c for n, c in codes.items() if c not in (0, None)}
            if unclean and not failed:
                say(f"stopped (non-zero exits: {unclean}; see {LOGS.relative_to(ROOT)}/)")
            else:
                say("stopped" if failed else "stopped cleanly")
            delete_vhost(infra, DEMO)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="show one invoice, then stop")
    sys.exit(asyncio.run(main(parser.parse_args().once)))
