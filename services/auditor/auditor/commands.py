"""``mlc audit show|failed|suppressions|purge`` and ``mlc retry``: the auditor's operator
commands (``mlc-audit``) under the one ``mlc`` command. See ``auditor.cli`` for what they do."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from auditor import cli as audit_cli
from common.cli import Command
from common.settings import ServiceSettings as Settings

__all__ = ["AUDIT", "RETRY"]

Say = Callable[[str], None]


async def run_audit(settings: Settings, args: argparse.Namespace, say: Say) -> int:
    return await asyncio.to_thread(audit_cli.run_audit, args, say)


async def run_retry(settings: Settings, args: argparse.Namespace, say: Say) -> int:
    return await asyncio.to_thread(audit_cli.run_retry, args, say)


AUDIT = Command("the audit trail, failures and retention", audit_cli.add_audit_arguments, run_audit)
RETRY = Command("retry failed notifications", audit_cli.add_retry_arguments, run_retry)
