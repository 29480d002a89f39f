"""Subcommands of the one ``mlc`` command that live with the service owning their data.

``mlc`` (token-keeper's console script) imports no other service: a service contributes a
subcommand by naming a ``Command`` in its package's entry points, group ``mlc.commands``
(``rules = "enricher.commands:RULES"``), and ``mlc`` finds them when it starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

__all__ = ["GROUP", "Command", "Say", "plugged_commands"]

#: The entry-point group ``mlc`` reads.
GROUP = "mlc.commands"

Say = Callable[[str], None]


@dataclass(frozen=True)
class Command:
    """One ``mlc`` subcommand: its help line, its arguments and its coroutine (given the
    ``MLC_`` settings ``mlc`` read, the parsed arguments and a line printer; returns the exit
    status)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], object]
    run: Callable[[Any, argparse.Namespace, Say], Awaitable[int]]


def plugged_commands() -> dict[str, Command]:
    """Every installed ``mlc.commands`` entry point, by subcommand name."""
    found: dict[str, Command] = {}
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        command = point.load()
        if isinstance(command, Command):
            found[point.name] = command
    return found
