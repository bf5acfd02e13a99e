"""Periodic jobs: each period is a slot, and exactly one worker process enqueues each slot's job.

Every process runs the scheduler. A slot's job is named `<name>-<slot>` and enqueued only if no
record of it exists yet (one script: check, record, append), so however many processes try, the
slot runs once; a process that could not reach Redis tries again on its next tick. The job then
goes through its stream like any other, with retries and the dead-letter stream. The first tick
waits until the services the jobs call can be reached (`ready`): at start they come up beside the
worker, and a first run before them would only fail once and wait for its retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from meshplate_core.events import Event
from meshplate_core.jobs import JobStore
from meshplate_core.redis_client import REDIS_FAILURES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """Enqueue `event(job_id)` every `interval_s` seconds."""

    name: str
    interval_s: float
    event: Callable[[str], Event]


class Scheduler:
    """Enqueues each schedule's job once per slot, and runs `housekeeping` every
    `housekeeping_s` (0: never), until stopped; the schedules begin once `ready` returns."""

    def __init__(
        self,
        jobs: JobStore,
        schedules: list[Schedule],
        *,
        housekeeping: Callable[[], Awaitable[object]] | None = None,
        housekeeping_s: float = 0.0,
        tick_s: float = 1.0,
        ready: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._jobs = jobs
        self._schedules = [schedule for schedule in schedules if schedule.interval_s > 0]
        self._tick_s = min([tick_s, *(s.interval_s / 2 for s in self._schedules)])
        self._last_slot: dict[str, int] = {}
        self._housekeeping = housekeeping if housekeeping_s > 0 else None
        self._housekeeping_s = housekeeping_s
        self._housekept_at = 0.0
        self._stopping = asyncio.Event()
        self._ready = ready

    def stop(self) -> None:
        """Return from `run` after the current tick."""
        self._stopping.set()

    async def run(self) -> None:
        """Until stopped: every tick, claim and enqueue the slots that have begun."""
        ready = asyncio.ensure_future(self._ready()) if self._ready is not None else None
        try:
            while not self._stopping.is_set():
                # Housekeeping from the start (it says this consumer is alive); jobs once ready.
                if ready is None or (ready.done() and not ready.cancelled()):
                    for schedule in self._schedules:
                        await self._maybe_enqueue(schedule)
                await self._maybe_housekeep()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self._tick_s)
        finally:
            if ready is not None:
                ready.cancel()

    async def _maybe_housekeep(self) -> None:
        if (
            self._housekeeping is None
            or time.monotonic() - self._housekept_at < self._housekeeping_s
        ):
            return
        self._housekept_at = time.monotonic()
        try:
            await self._housekeeping()
        except REDIS_FAILURES as exc:
            log.warning("housekeeping failed: %s", exc)
        except Exception:
            log.exception("housekeeping failed")

    async def _maybe_enqueue(self, schedule: Schedule) -> None:
        slot = math.floor(time.time() / schedule.interval_s)
        if self._last_slot.get(schedule.name) == slot:
            return
        job_id = f"{schedule.name}-{slot}"
        try:
            if await self._jobs.enqueue_once(job_id, schedule.event(job_id), system=True):
                log.info("scheduled %s", job_id)
            self._last_slot[schedule.name] = slot
        except REDIS_FAILURES as exc:
            log.warning("could not schedule %s: %s", job_id, exc)
        except Exception:
            log.exception("scheduling %s failed", job_id)
