"""CPU time and memory of the processes under load, read from /proc.

A `Group` is a named set of processes counted together: a process and all its descendants (a
server that forks workers), or a PostgreSQL server's own processes and the backends of some
databases only (the server may be shared). CPU is each process's own user and system time
(children's times are left out: a shared server's reaped children are someone else's).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
# A PostgreSQL client backend's title names its peer: "... 127.0.0.1(43210) idle", "[local]".
_CLIENT_BACKEND = re.compile(r"\(\d+\)|\[local\]")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields after the command name (which may hold spaces and parentheses).
    return text.rpartition(")")[2].split()


def cmdline(pid: int) -> list[str]:
    """A process's arguments (empty when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def parent(pid: int) -> int | None:
    """A process's parent (None when it is gone)."""
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def parents() -> dict[int, int]:
    """Every visible process's parent."""
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            found[int(entry.name)] = int(fields[1])
    return found


def descendants(root: int, family: dict[int, int]) -> list[int]:
    """The children of `root`, their children, and so on (`family`: every process's parent)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in family.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_s(pid: int) -> float:
    """User and system CPU seconds of one process (0 when it is gone)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK if fields else 0.0


def rss_bytes(pid: int) -> int:
    """A process's resident memory (VmRSS; 0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(found[1]) * 1024 if found else 0


@dataclass(frozen=True)
class Group:
    """Processes counted under one name; `pids` (given every process's parent) is asked again
    each time, as a tree may grow."""

    name: str
    pids: Callable[[dict[int, int]], list[int]]


def tree(name: str, root: int) -> Group:
    """`root` and all its descendants."""
    return Group(name, lambda family: [root, *descendants(root, family)] if root in family else [])


def postgres(name: str, postmaster: int, databases: Collection[str] | None = None) -> Group:
    """A PostgreSQL server: the postmaster, its background processes and the backends connected
    to `databases` (None: every backend)."""

    def pids(family: dict[int, int]) -> list[int]:
        if postmaster not in family:
            return []
        found = [postmaster]
        for pid in descendants(postmaster, family):
            title = " ".join(cmdline(pid))
            if (
                databases is None
                or not _CLIENT_BACKEND.search(title)
                or any(f" {database} " in title for database in databases)
            ):
                found.append(pid)
        return found

    return Group(name, pids)


CpuReading = dict[str, dict[int, float]]


def cpu(groups: Iterable[Group]) -> CpuReading:
    """CPU seconds used so far by each process of each group."""
    family = parents()
    return {group.name: {pid: cpu_s(pid) for pid in group.pids(family)} for group in groups}


def used(before: CpuReading, after: CpuReading) -> dict[str, float]:
    """CPU seconds each group used between two readings: what its processes of the second
    used since the first (all of it for a process new since); a process gone meanwhile is lost."""
    return {
        name: sum(seconds - before.get(name, {}).get(pid, 0.0) for pid, seconds in pids.items())
        for name, pids in after.items()
    }


@dataclass(frozen=True)
class Memory:
    """A group's resident memory: in all (pages its processes share are counted in each),
    how many processes, and the largest one's."""

    total: int
    processes: int
    largest: int


def rss(groups: Iterable[Group]) -> dict[str, Memory]:
    """Resident memory of each group now."""
    family, found = parents(), {}
    for group in groups:
        sizes = [rss_bytes(pid) for pid in group.pids(family)]
        found[group.name] = Memory(sum(sizes), len(sizes), max(sizes, default=0))
    return found


async def settle(groups: Collection[Group], *, cores: float = 0.1, max_s: float = 30) -> bool:
    """Wait (at most `max_s`) until `groups` together use under `cores` over half a second
    (what a previous load left, such as queued e-mails, is done); whether they did."""
    deadline = time.monotonic() + max_s
    while time.monotonic() < deadline:
        before, since = cpu(groups), time.monotonic()
        await asyncio.sleep(0.5)
        if sum(used(before, cpu(groups)).values()) < cores * (time.monotonic() - since):
            return True
    return False
