"""``mlc audit show|failed`` and ``mlc retry``: the auditor's operator commands (``mlc-audit``)
under the one ``mlc`` command. See ``auditor.cli`` for what they do."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable

from auditor import cli as audit_cli
from token_keeper.settings import Settings

__all__ = ["add_audit_arguments", "add_retry_arguments", "run_audit", "run_retry"]

Say = Callable[[str], None]

add_audit_arguments = audit_cli.add_audit_arguments
add_retry_arguments = audit_cli.add_retry_arguments


async def run_audit(settings: Settings, args: argparse.Namespace, say: Say) -> int:
    return await asyncio.to_thread(audit_cli.run_audit, args, say)


async def run_retry(settings: Settings, args: argparse.Namespace, say: Say) -> int:
    return await asyncio.to_thread(audit_cli.run_retry, args, say)
