"""What the pipeline benchmark reads from ``/proc``: CPU seconds and peak memory of process
trees, and which process owns a loopback TCP port.

Why ``/proc`` and not psutil: the project does not depend on psutil, and the few fields needed
(``utime``, ``stime``, ``cutime``, ``cstime``, ``VmHWM``, socket inodes) are one read each.
On a system without ``/proc`` every function answers empty, and the benchmark reports what it
could not measure instead of failing.

CPU of a tree is counted with the children's fields (``cutime`` + ``cstime``) of every live
member: a PostgreSQL backend or an Erlang helper that exits between two samples moves its
time into its parent's children's fields, so the difference of two samples still holds it.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CLOCK_TICKS",
    "ProcessTable",
    "median",
    "percentile",
    "port_owners",
    "tree_peak_rss_kib",
]

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class _Stat:
    ppid: int
    #: utime + stime + cutime + cstime, in clock ticks
    ticks: int


def _stat(pid: int) -> _Stat | None:
    """One process's parent and CPU ticks; None when it is gone (or no /proc)."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ")"
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); ppid is field 4, utime..cstime are fields 14..17
    return _Stat(int(fields[1]), sum(int(f) for f in fields[11:15]))


class ProcessTable:
    """One snapshot of every process: taken whole, so that the trees of several components
    are read at the same instant and a process is never counted in two of them."""

    def __init__(self) -> None:
        self.stats: dict[int, _Stat] = {}
        if PROC.is_dir():
            for entry in PROC.iterdir():
                if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
                    self.stats[int(entry.name)] = found
        self._children: dict[int, list[int]] = {}
        for pid, found in self.stats.items():
            self._children.setdefault(found.ppid, []).append(pid)

    def tree(self, roots: Iterable[int]) -> set[int]:
        """The roots that are alive and all their descendants."""
        members: set[int] = set()
        pending = [pid for pid in roots if pid in self.stats]
        while pending:
            pid = pending.pop()
            if pid not in members:
                members.add(pid)
                pending.extend(self._children.get(pid, ()))
        return members

    def cpu_seconds(self, roots: Mapping[str, Iterable[int]]) -> dict[str, float]:
        """CPU seconds (user + system, reaped children included) of each named tree."""
        return {
            name: sum(self.stats[pid].ticks for pid in self.tree(pids)) / CLOCK_TICKS
            for name, pids in roots.items()
        }


def tree_peak_rss_kib(
    table: ProcessTable, roots: Iterable[int], field: str = "VmHWM"
) -> int | None:
    """The largest ``VmHWM`` (peak resident set since the process started; ``field="VmRSS"``:
    the resident set now) of any member of the tree: for a service, its own; for PostgreSQL
    and RabbitMQ, their biggest process (their processes share memory, so a sum would count
    it several times)."""
    peak: int | None = None
    for pid in table.tree(roots):
        try:
            status = (PROC / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith(field + ":"):
                value = int(line.split()[1])
                peak = value if peak is None else max(peak, value)
    return peak


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = list((PROC / str(pid) / "fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _local_ports() -> dict[int, int]:
    """Socket inode -> local TCP port, over IPv4 and IPv6."""
    ports: dict[int, int] = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            ports[int(parts[9])] = int(parts[1].rsplit(":", 1)[1], 16)
    return ports


def port_owners(table: ProcessTable, roots: Mapping[str, Iterable[int]]) -> dict[int, str]:
    """Local TCP port -> the name of the tree whose process holds that socket. Lets a
    PostgreSQL backend (``pg_stat_activity.client_port``) be put down to the service that
    opened it when the services set no ``application_name``."""
    by_inode = _local_ports()
    owners: dict[int, str] = {}
    for name, pids in roots.items():
        for pid in table.tree(pids):
            for inode in _socket_inodes(pid):
                if inode in by_inode:
                    owners[by_inode[inode]] = name
    return owners


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile with linear interpolation between closest ranks (what
    numpy's default does); None for no values."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Iterable[float | None]) -> float | None:
    """The median of the known values; None when there are none."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None
