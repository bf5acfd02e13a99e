"""What a scenario measured, and how: a load (or several at once) between two readings of the CPU
time of every process of the system under test, after the system has settled.

CPU milliseconds are per answer (whatever its status: a refusal costs too), summed over each
process group's processes; the load generator's own (this process's children: wrk, the gRPC
callers) is kept apart, as it is not the system's.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bench.procs import Group, Memory, cpu, settle, used


class Load(Protocol):
    """A finished load, as bench.wrk and bench.grpc_load report it."""

    @property
    def seconds(self) -> float: ...
    @property
    def ok(self) -> int: ...
    @property
    def answered(self) -> int: ...
    @property
    def failures(self) -> dict[str, int]: ...
    @property
    def p50_s(self) -> float: ...
    @property
    def p90_s(self) -> float: ...
    @property
    def p99_s(self) -> float: ...


@dataclass(frozen=True)
class Spec:
    """A load to run: `run` starts it and returns once it is over."""

    key: str
    title: str
    connections: int
    run: Callable[[], Awaitable[Load]]
    unit: str = "req"


@dataclass(frozen=True)
class Result:
    """One scenario's figures."""

    key: str
    title: str
    system: str
    connections: int
    ok: int
    seconds: float
    p50_s: float
    p90_s: float
    p99_s: float
    failures: dict[str, int]
    # CPU milliseconds per answer, by process group; the load generator's apart.
    cpu_ms: dict[str, float]
    load_ms: float
    unit: str = "req"
    note: str = ""

    @property
    def rate(self) -> float:
        """Successful answers per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def cpu_sum(self) -> float:
        return sum(self.cpu_ms.values())


@dataclass
class Run:
    """Everything one `make bench` measured."""

    results: dict[str, Result] = field(default_factory=dict)
    # Resident memory by process group: idle after start, and after the load.
    rss: dict[str, tuple[Memory, Memory]] = field(default_factory=dict)
    # Other findings, printed as they are (e.g. Redis round trips per decision).
    facts: dict[str, str] = field(default_factory=dict)
    redis_reads_per_check: float | None = None
    # The password hash of a signed-up user (its parameters are a target).
    password_hash: str | None = None
    # Seconds from starting a users process to its health answering SERVING (issue #12).
    users_start_s: float | None = None
    # Scenarios that could not be measured, and why.
    errors: list[str] = field(default_factory=list)

    def add(self, *results: Result) -> None:
        for result in results:
            self.results[result.key] = result


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def measure(
    system: str, groups: Sequence[Group], *specs: Spec, quiet: Sequence[Group] = ()
) -> list[Result]:
    """Run `specs` at once, once `groups` and `quiet` have settled; their results, with the CPU
    `groups` used meanwhile shared out over every answer of every spec."""
    settled = await settle([*groups, *quiet])
    before, children = cpu(groups), _children_cpu_s()
    loads = await asyncio.gather(*(spec.run() for spec in specs))
    spent, children = used(before, cpu(groups)), _children_cpu_s() - children
    answered = max(1, sum(load.answered for load in loads))
    cpu_ms = {name: seconds * 1000 / answered for name, seconds in spent.items()}
    notes = [
        *([] if settled else ["measured although the processes were still busy 30 s after"]),
        *(["CPU per answer of the loads run together"] if len(specs) > 1 else []),
    ]
    return [
        Result(
            key=spec.key,
            title=spec.title,
            system=system,
            connections=spec.connections,
            ok=load.ok,
            seconds=load.seconds,
            p50_s=load.p50_s,
            p90_s=load.p90_s,
            p99_s=load.p99_s,
            failures=load.failures,
            cpu_ms=cpu_ms,
            load_ms=children * 1000 / answered,
            unit=spec.unit,
            note="; ".join(notes),
        )
        for spec, load in zip(specs, loads, strict=True)
    ]
