"""What one worker process is running: slots per job kind, the jobs under way, one heartbeat for
all of them, and the shutdown that lets them finish or hands them back.

Every started job runs in a task of its own and holds one of its kind's slots while it works (not
while its outcome is written: the next jobs' starts then share that round trip). Every third of the claim idle time one heartbeat renews all running jobs at once (one
round trip); a job another consumer has taken over is cancelled. At shutdown nothing more starts,
running jobs get a grace period, and those still running then are cancelled, which hands them
back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context
from redis.exceptions import RedisError

from worker.attempts import Entry
from worker.kind import JobKind

log = logging.getLogger(__name__)

# Renews (entry, job id, attempt) for each running job: False where another consumer took it.
Renew = Callable[[Sequence[tuple[Entry, str, int]]], Awaitable[Sequence[bool | Exception]]]


@dataclass(eq=False)
class Delivery:
    """One delivery of one job, from its entry to its outcome."""

    kind: JobKind[Any]
    entry: Entry
    fields: Mapping[Any, Any]
    event: Any
    job_id: str
    parent: Context
    attempt: int = 0
    task: asyncio.Task[None] | None = None
    # Why it was cancelled: another consumer took the job over, or the process is stopping.
    overtaken: bool = False
    handing_back: bool = False
    # The work is over; only its outcome is being written (never cancelled, holds no slot).
    settling: bool = False

    @property
    def log_fields(self) -> dict[str, Any]:
        """What its log lines carry."""
        return {"job_kind": self.kind.name, "job_id": self.job_id}


@dataclass(eq=False)
class _Slots:
    free: int
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def give(self, count: int) -> None:
        self.free += count
        self.changed.set()


class Running:
    """The jobs of one process, at most `concurrency` of each kind at a time."""

    def __init__(self, renew: Renew, *, concurrency: int, heartbeat_s: float) -> None:
        self._renew = renew
        self._concurrency = concurrency
        self._heartbeat_s = heartbeat_s
        self._slots: dict[str, _Slots] = {}
        self._jobs: set[Delivery] = set()
        self._handing_back: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self.stopping = False

    async def slots(self, kind: JobKind[Any], wanted: int) -> int:
        """Take up to `wanted` of `kind`'s slots, waiting until at least one is free; 0 once
        stopping."""
        slots = self._slots.get(kind.name)
        if slots is None:
            slots = self._slots[kind.name] = _Slots(self._concurrency)
        while slots.free == 0 and not self.stopping:
            slots.changed.clear()
            await slots.changed.wait()
        if self.stopping:
            return 0
        taken = min(wanted, slots.free)
        slots.free -= taken
        return taken

    def give_back(self, kind: JobKind[Any], count: int = 1) -> None:
        """Slots taken but not used."""
        self._slots[kind.name].give(count)

    def start(self, job: Delivery, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` for `job`, which holds a slot until `worked` (or its end)."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat())
        job.task = asyncio.create_task(work)
        self._jobs.add(job)
        job.task.add_done_callback(lambda task: self._ended(job, task))

    def worked(self, job: Delivery) -> None:
        """`job`'s work is over: its slot is free before its outcome is written, so the next
        jobs' starts go out in the same round trip as this outcome."""
        if not job.settling:
            job.settling = True
            self._slots[job.kind.name].give(1)

    def hand_back(self, step: Coroutine[Any, Any, None]) -> None:
        """Run a hand-back in a task of its own (the cancellation cannot reach it); `finish`
        waits for it."""
        task = asyncio.create_task(step)
        self._handing_back.add(task)
        task.add_done_callback(self._handing_back.discard)
        task.add_done_callback(_report)

    def stop_starting(self) -> None:
        """Start nothing more (whoever waits for a slot gets none)."""
        self.stopping = True
        for slots in self._slots.values():
            slots.changed.set()

    async def finish(self, *, grace_s: float, hand_back_s: float) -> None:
        """At shutdown: running jobs get `grace_s` to finish; those still running are then
        cancelled and handed back (waited for up to `hand_back_s`)."""
        self.stop_starting()
        if tasks := {job.task for job in self._jobs if job.task is not None}:
            await asyncio.wait(tasks, timeout=grace_s)
        for job in list(self._jobs):
            if job.task is not None and not job.settling:
                job.handing_back = True
                job.task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + hand_back_s
        while pending := {job.task for job in self._jobs if job.task} | self._handing_back:
            if (remaining := deadline - loop.time()) <= 0:
                log.warning("%d jobs not handed back: they are claimed once idle", len(pending))
                break
            await asyncio.wait(pending, timeout=remaining)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    def _ended(self, job: Delivery, task: asyncio.Task[None]) -> None:
        self.worked(job)
        self._jobs.discard(job)
        _report(task, job.log_fields)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_s)
            jobs = [job for job in self._jobs if not job.settling]
            if not jobs:
                continue
            try:
                alive = await self._renew([(job.entry, job.job_id, job.attempt) for job in jobs])
            except (RedisError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for job, answer in zip(jobs, alive, strict=True):
                if isinstance(answer, Exception):
                    log.warning("heartbeat failed: %s", answer, extra=job.log_fields)
                elif not answer and not job.settling and job.task is not None:
                    job.overtaken = True
                    job.task.cancel()


def _report(task: asyncio.Task[None], fields: Mapping[str, Any] | None = None) -> None:
    # A job's own failures are outcomes; what escapes its task is a bug, logged (not left to the
    # garbage collector's "exception was never retrieved").
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("delivery failed: %s", exc, exc_info=exc, extra=dict(fields or {}))
