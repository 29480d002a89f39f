"""``mlc-audit`` (also ``mlc audit`` and ``mlc retry``): the audit trail for operators.

::

    mlc-audit show <invoice number | document id> [--reveal] [--json]
    mlc-audit trail ...                  (the same as show)
    mlc-audit failed [--since T] [--reason R] [--json]
    mlc-audit suppressions [--connection ID] [--limit N] [--json]
    mlc-audit purge --older-than DAYS [--yes]
    mlc-audit retry <notification id> | --document N | --reason R [--since T]

Asks the auditor's HTTP API at ``MLC_AUDITOR_URL`` (default http://127.0.0.1:8083, or
``--url``), always with a bearer token: ``show`` with ``MLC_AUDITOR_READ_TOKEN`` when set, else
``MLC_AUDITOR_ADMIN_TOKEN``; ``--reveal``, ``failed``, ``suppressions``, ``purge`` and ``retry``
with ``MLC_AUDITOR_ADMIN_TOKEN``.

Recipients are always masked: the trail keeps only a masked form and a keyed hash of each
address, so no command can show one in clear. ``--reveal`` shows each message's text (sealed
in the trail, opened by the auditor) and its Exact contact. ``suppressions`` (the history of
the dispatcher's suppression list, newest first) shows masked addresses.

``purge`` deletes notifications (with their attempts and statuses) and inbound messages whose
last update is older than DAYS, and records it in the trail's privacy log; without ``--yes``
it only counts what it would delete. The auditor applies ``MLC_AUDITOR_RETENTION_DAYS``
(default 400) by itself every day; ``purge`` is for a shorter period now.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any
from uuid import UUID

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.contracts import FAILURE_REASONS, INSTALL_SCOPE
from common.logging import mask_text

__all__ = [
    "AuditClient",
    "CliSettings",
    "add_audit_arguments",
    "add_retry_arguments",
    "format_failures",
    "format_purge",
    "format_suppressions",
    "format_trail",
    "main",
    "run_audit",
    "run_retry",
]

Say = Callable[[str], None]


class CliSettings(BaseSettings):
    """Where the auditor answers, and its tokens."""

    model_config = SettingsConfigDict(env_prefix="MLC_", extra="ignore")

    auditor_url: str = "http://127.0.0.1:8083"
    auditor_admin_token: SecretStr | None = None
    auditor_read_token: SecretStr | None = None


class AuditClient:
    """The auditor's HTTP API, through the standard library (the CLI opens no event loop)."""

    def __init__(
        self, url: str, token: SecretStr | None, read_token: SecretStr | None = None
    ) -> None:
        self._url = url.rstrip("/")
        self._token = token
        self._read_token = read_token

    def _token_for(self, path: str) -> SecretStr:
        """The least token that opens ``path``: the read token for ``/trail`` when there is
        one; SystemExit naming the variable to set when there is none."""
        if path.startswith("/admin/"):
            if self._token is None:
                raise SystemExit("set MLC_AUDITOR_ADMIN_TOKEN to use the auditor's admin API")
            return self._token
        token = self._read_token or self._token
        if token is None:
            raise SystemExit(
                "set MLC_AUDITOR_READ_TOKEN or MLC_AUDITOR_ADMIN_TOKEN to read the audit trail"
            )
        return token

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        token = self._token_for(path)
        headers = {
            "Accept": "application/json",
            "Authorization": f"Bearer {token.get_secret_value()}",
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - the operator's auditor URL
            self._url + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise SystemExit(f"auditor answered {exc.code}: {detail}") from exc
        except urllib.error.URLError as exc:
            raise SystemExit(f"auditor not reachable at {self._url}: {exc.reason}") from exc

    def trail(self, document: str, *, reveal: bool) -> list[dict[str, Any]]:
        try:
            UUID(document)
            query = {"document_id": document}
        except ValueError:
            query = {"number": document}
        path = "/admin/trail" if reveal else "/trail"
        if reveal:
            query["reveal"] = "1"
        answer = self._call("GET", f"{path}?{urllib.parse.urlencode(query)}")
        return list(answer["notifications"])

    def failed(
        self, *, since: str | None, reason: str | None, reveal: bool
    ) -> dict[str, list[dict[str, Any]]]:
        query = {k: v for k, v in (("since", since), ("reason", reason)) if v}
        if reveal:
            query["reveal"] = "1"
        answer = self._call("GET", f"/admin/failed?{urllib.parse.urlencode(query)}")
        return dict(answer["groups"])

    def suppressions(self, *, connection: str | None, limit: int) -> list[dict[str, Any]]:
        query: dict[str, str | int] = {"limit": limit}
        if connection:
            query["connection"] = connection
        answer = self._call("GET", f"/admin/suppressions?{urllib.parse.urlencode(query)}")
        return list(answer["suppressions"])

    def retry(self, **target: str | None) -> list[dict[str, Any]]:
        body = {k: v for k, v in target.items() if v}
        return list(self._call("POST", "/admin/retry", body)["retried"])

    def purge(self, *, older_than_days: int, confirm: bool, requested_by: str) -> dict[str, Any]:
        body = {
            "older_than_days": older_than_days,
            "confirm": confirm,
            "requested_by": requested_by,
        }
        return dict(self._call("POST", "/admin/purge", body))


def format_trail(trail: list[dict[str, Any]], *, reveal: bool = False) -> str:
    """A readable trail; recipients are masked (the only form the trail keeps); ``reveal``
    adds each message's text, as the admin API answered it."""
    if not trail:
        return "no notifications recorded for this document"
    lines = []
    for n in trail:
        who = n.get("recipient") or "-"
        reason = f" ({n['failure_reason']})" if n.get("failure_reason") else ""
        retry_of = f", retry of {n['retry_of']}" if n.get("retry_of") else ""
        lines.append(
            f"{n.get('entity')} {n.get('document_number') or n.get('document_id')} "
            f"[{n.get('fact')}] {n.get('channel')} to {who if reveal else mask_text(who)}: "
            f"{n.get('state')}{reason}, delivery {n.get('delivery_status') or '-'}"
            f" (notification {n.get('notification_id')}, provider id "
            f"{n.get('provider_id') or '-'}{retry_of})"
        )
        if reveal and n.get("content") is not None:
            lines.append(f"    text: {n['content']}")
        for a in n.get("attempts", []):
            detail = _attempt_detail(a, reveal=reveal)
            by = f" by {a['requested_by']}" if a.get("requested_by") else ""
            lines.append(
                f"    attempt {a.get('attempt') or '-'}: {a['outcome']}{detail}{by}"
                f" at {a['recorded_at']}"
            )
        for e in n.get("status_history", []):
            repeats = f" (+{e['repeats']} repeats)" if e.get("repeats") else ""
            lines.append(f"    status {e['status']} at {e['received_at']}{repeats}")
        lines += [_learnt_line(c) for c in n.get("suppressions", [])]
    return "\n".join(lines)


def _attempt_detail(attempt: dict[str, Any], *, reveal: bool) -> str:
    """A provider's error with its code; a skip's words (``opted_out: suppressed: bounced``),
    which say why nothing was sent."""
    if attempt.get("error_code"):
        return f" {attempt['error_code']}: {attempt['error']}"
    if attempt["outcome"] == "skipped" and attempt.get("error"):
        words = str(attempt["error"])
        return f" ({words if reveal else mask_text(words)})"
    return ""


def _learnt_line(change: dict[str, Any]) -> str:
    """A suppression change this notification taught: why later sends to the address are
    skipped (the address masked, as everything about suppressions)."""
    return (
        f"    suppression {change['action']} from this notification: {change['channel']} "
        f"{mask_text(str(change['address_masked']))} ({change['reason']}, "
        f"source {change['source']}) at {change['occurred_at']}"
    )


def format_suppressions(changes: list[dict[str, Any]]) -> str:
    """The suppression history as the API answers it (newest first), one change a line."""
    if not changes:
        return "no suppression changes recorded"
    return "\n".join(_suppression_line(c) for c in changes)


def _suppression_line(c: dict[str, Any]) -> str:
    scope = "all connections" if c["connection_id"] == INSTALL_SCOPE else c["connection_id"]
    learnt = f", notification {c['notification_id']}" if c.get("notification_id") else ""
    by = f", by {mask_text(str(c['requested_by']))}" if c.get("requested_by") else ""
    note = f": {mask_text(str(c['note']))}" if c.get("note") else ""
    return (
        f"{c['occurred_at']} {c['action']:<6} {c['channel']:<5} "
        f"{mask_text(str(c['address_masked']))} ({c['reason']}, source {c['source']}) "
        f"[{scope}{learnt}{by}]{note}"
    )


def format_failures(groups: dict[str, list[dict[str, Any]]], *, reveal: bool = False) -> str:
    """Failures grouped by reason, in the order of FAILURE_REASONS."""
    if not any(groups.values()):
        return "nothing needs attention"
    order = [r for r in FAILURE_REASONS if r in groups] + sorted(
        r for r in groups if r not in FAILURE_REASONS
    )
    lines = []
    for reason in order:
        items = groups[reason]
        lines.append(f"{reason}: {len(items)}")
        for n in items:
            who = n.get("recipient") or "-"
            code = f" code {n['error_code']}" if n.get("error_code") else ""
            lines.append(
                f"    {n.get('notification_id')} {n.get('entity')} "
                f"{n.get('document_number') or n.get('document_id')} [{n.get('fact')}] "
                f"to {who if reveal else mask_text(who)}: {n.get('state')}{code}"
                f" at {n.get('updated_at')}"
            )
    return "\n".join(lines)


#: What ``--reveal`` does, and what it cannot do any more.
_REVEAL_HELP = (
    "show each message's text and Exact contact (admin token); recipients stay masked: the "
    "trail keeps no clear address to reveal"
)


def add_audit_arguments(
    parser: argparse.ArgumentParser,
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """``show``, ``trail`` (its old name), ``failed``, ``suppressions`` and ``purge``; returns
    the subcommands."""
    sub = parser.add_subparsers(dest="audit_command", required=True)
    for name in ("show", "trail"):
        show = sub.add_parser(name, help="every notification, attempt and status of a document")
        show.add_argument("document", help="invoice number or document id (UUID)")
        show.add_argument("--reveal", action="store_true", help=_REVEAL_HELP)
        show.add_argument("--json", action="store_true", help="raw JSON")
        show.add_argument("--url", help="auditor base URL (default MLC_AUDITOR_URL)")
    failed = sub.add_parser("failed", help="what needs attention, grouped by reason")
    failed.add_argument("--since", help="ISO date or time")
    failed.add_argument("--reason", choices=FAILURE_REASONS)
    failed.add_argument(
        "--reveal", action="store_true", help="kept for scripts: recipients stay masked"
    )
    failed.add_argument("--json", action="store_true", help="raw JSON")
    failed.add_argument("--url", help="auditor base URL (default MLC_AUDITOR_URL)")
    _add_suppressions_arguments(
        sub.add_parser(
            "suppressions", help="addresses added to and lifted from the suppression list"
        )
    )
    _add_purge_arguments(
        sub.add_parser("purge", help="delete what is older than a retention period, now")
    )
    return sub


def _add_purge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--older-than",
        type=_positive,
        required=True,
        metavar="DAYS",
        help="notifications last updated, and inbound messages received, more than DAYS ago",
    )
    parser.add_argument("--yes", action="store_true", help="delete (without it: only count)")
    parser.add_argument("--requested-by", default="operator", help="recorded in the privacy log")
    parser.add_argument("--url", help="auditor base URL (default MLC_AUDITOR_URL)")


def _positive(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _add_suppressions_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connection", help="one connection's changes (and the install-wide ones)")
    parser.add_argument("--limit", type=_positive, default=50, help="newest N (default 50)")
    parser.add_argument("--json", action="store_true", help="raw JSON")
    parser.add_argument("--url", help="auditor base URL (default MLC_AUDITOR_URL)")


def add_retry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notification_id", nargs="?", help="the notification to retry")
    parser.add_argument("--document", help="retry the failed notifications of this document")
    parser.add_argument("--reason", choices=FAILURE_REASONS, help="retry every failure so")
    parser.add_argument("--since", help="with --reason: only failures since (ISO date or time)")
    parser.add_argument("--requested-by", default="operator", help="recorded in the trail")
    parser.add_argument("--url", help="auditor base URL (default MLC_AUDITOR_URL)")


def _client(args: argparse.Namespace, settings: CliSettings) -> AuditClient:
    return AuditClient(
        args.url or settings.auditor_url,
        settings.auditor_admin_token,
        settings.auditor_read_token,
    )


def format_purge(done: dict[str, Any]) -> str:
    """What a purge deleted (or, unconfirmed, would delete), per table."""
    counts = ", ".join(f"{n} {table}" for table, n in done["counts"].items())
    if done["dry_run"]:
        return f"would delete {counts} (older than {done['cutoff']}); run again with --yes"
    return f"deleted {counts} (older than {done['cutoff']}); recorded in the privacy log"


def run_audit(args: argparse.Namespace, say: Say, settings: CliSettings | None = None) -> int:
    client = _client(args, settings or CliSettings())
    if args.audit_command == "purge":
        done = client.purge(
            older_than_days=args.older_than, confirm=args.yes, requested_by=args.requested_by
        )
        say(format_purge(done))
        return 0
    if args.audit_command in ("show", "trail"):
        trail = client.trail(args.document, reveal=args.reveal)
        say(json.dumps(trail, indent=2) if args.json else format_trail(trail, reveal=args.reveal))
        return 0
    if args.audit_command == "suppressions":
        changes = client.suppressions(connection=args.connection, limit=args.limit)
        say(json.dumps(changes, indent=2) if args.json else format_suppressions(changes))
        return 0
    groups = client.failed(since=args.since, reason=args.reason, reveal=args.reveal)
    say(json.dumps(groups, indent=2) if args.json else format_failures(groups, reveal=args.reveal))
    return 0


def run_retry(args: argparse.Namespace, say: Say, settings: CliSettings | None = None) -> int:
    given = [bool(args.notification_id), bool(args.document), bool(args.reason or args.since)]
    if sum(given) != 1:
        say("give one of: a notification id, --document N, or --reason R [--since T]")
        return 2
    done = _client(args, settings or CliSettings()).retry(
        notification_id=args.notification_id,
        document=args.document,
        reason=args.reason,
        since=args.since,
        requested_by=args.requested_by,
    )
    if not done:
        say("nothing to retry")
        return 1
    for item in done:
        say(f"{item['notification_id']}: {item['action']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlc-audit", description="the audit trail")
    sub = add_audit_arguments(parser)
    add_retry_arguments(sub.add_parser("retry", help="retry failed notifications"))
    args = parser.parse_args(argv)
    if args.audit_command == "retry":
        return run_retry(args, print)
    return run_audit(args, print)


if __name__ == "__main__":
    sys.exit(main())
