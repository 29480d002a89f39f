"""``mlc-audit trail <invoice number | document id>``: print one document's audit trail.

Asks the auditor's HTTP API (``--url``, default http://127.0.0.1:8083).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from typing import Any
from uuid import UUID

from common.logging import mask_text

__all__ = ["format_trail", "main"]


def format_trail(trail: list[dict[str, Any]], *, reveal: bool = False) -> str:
    """A readable trail; recipients are masked unless ``reveal``."""
    if not trail:
        return "no notifications recorded for this document"
    lines = []
    for n in trail:
        who = n.get("recipient") or "-"
        lines.append(
            f"{n.get('entity')} {n.get('document_number') or n.get('document_id')} "
            f"[{n.get('fact')}] {n.get('channel')} to {who if reveal else mask_text(who)}: "
            f"{n.get('state')}, delivery {n.get('delivery_status') or '-'}"
            f" (provider id {n.get('provider_id') or '-'})"
        )
        for a in n.get("attempts", []):
            detail = f" {a['error_code']}: {a['error']}" if a.get("error_code") else ""
            lines.append(
                f"    attempt {a.get('attempt') or '-'}: {a['outcome']}{detail}"
                f" at {a['recorded_at']}"
            )
        for e in n.get("status_history", []):
            repeats = f" (+{e['repeats']} repeats)" if e.get("repeats") else ""
            lines.append(f"    status {e['status']} at {e['received_at']}{repeats}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlc-audit")
    sub = parser.add_subparsers(dest="command", required=True)
    trail = sub.add_parser("trail", help="show the audit trail of one document")
    trail.add_argument("document", help="invoice number or document id (UUID)")
    trail.add_argument("--url", default="http://127.0.0.1:8083", help="auditor base URL")
    trail.add_argument("--json", action="store_true", help="raw JSON")
    trail.add_argument("--reveal", action="store_true", help="show recipients unmasked")
    args = parser.parse_args(argv)
    try:
        UUID(args.document)
        query = {"document_id": args.document}
    except ValueError:
        query = {"number": args.document}
    url = f"{args.url.rstrip('/')}/trail?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - operator's URL
        body = json.load(response)
    print(
        json.dumps(body, indent=2)
        if args.json
        else format_trail(body["notifications"], reveal=args.reveal)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
