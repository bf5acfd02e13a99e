"""Periodic jobs: each period is a slot, and exactly one worker process enqueues each slot's job.

Every process runs the scheduler; whoever first sets `worker:schedule:<name>:<slot>` (SET NX)
enqueues the slot's job, named `<name>-<slot>`. The job then goes through its stream like any
other, with retries and the dead-letter stream. A process that dies between winning a slot and
enqueueing loses that one slot; the next one runs as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from meshplate_core.events import Event
from meshplate_core.jobs import JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """Enqueue `event(job_id)` every `interval_s` seconds."""

    name: str
    interval_s: float
    event: Callable[[str], Event]


class Scheduler:
    """Enqueues each schedule's job once per slot, until stopped."""

    def __init__(self, jobs: JobStore, schedules: list[Schedule], *, tick_s: float = 1.0) -> None:
        self._jobs = jobs
        self._schedules = [schedule for schedule in schedules if schedule.interval_s > 0]
        self._tick_s = min([tick_s, *(s.interval_s / 2 for s in self._schedules)])
        self._last_slot: dict[str, int] = {}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Return from `run` after the current tick."""
        self._stopping.set()

    async def run(self) -> None:
        """Until stopped: every tick, claim and enqueue the slots that have begun."""
        while not self._stopping.is_set():
            for schedule in self._schedules:
                await self._maybe_enqueue(schedule)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._tick_s)

    async def _maybe_enqueue(self, schedule: Schedule) -> None:
        slot = math.floor(time.time() / schedule.interval_s)
        if self._last_slot.get(schedule.name) == slot:
            return
        job_id = f"{schedule.name}-{slot}"
        claim = f"worker:schedule:{job_id}"
        try:
            won = await self._jobs.redis.set(
                claim, "1", nx=True, ex=max(60, math.ceil(schedule.interval_s * 2))
            )
            if won:
                await self._jobs.enqueue(job_id, schedule.event(job_id), owner_id=None, system=True)
                log.info("scheduled %s", job_id)
            self._last_slot[schedule.name] = slot
        except (RedisError, OSError) as exc:
            log.warning("could not schedule %s: %s", job_id, exc)
