"""At-least-once handling of one stream entry, for every job kind: the retry, back-off and
dead-letter policy.

An entry is acknowledged only together with its outcome: `succeeded`, or `dead` with the entry
copied to the kind's dead-letter stream. A failed attempt is not acknowledged: the entry stays
pending, its record says `failed` with the time of the next try, and the kind's claiming
subscriber delivers it again once it has been idle long enough and that time has passed, so
retries back off exponentially and survive a crash of the process that failed. Deliveries are
counted on the job's record; the delivery after the last allowed one goes to the dead-letter
stream without running, which also ends a job that kills every worker that runs it.

A job starts once one of its kind's `concurrency` slots is free. While jobs run, one heartbeat
keeps their entries fresh (so no other consumer claims them) and renews their leases (so a second
entry of the same event waits instead of running it twice); an attempt overtaken anyway (this
process stalled longer than the claim idle time and another took the job) is cancelled and writes
nothing. At shutdown nothing more starts; FastStream gives running jobs a grace period and then
cancels them, which hands them back: the record says `queued` again, uncounted, and the entry is
claimable at once, as are the entries read but never started (`finish`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from meshplate_core.dead_letters import DEAD_PREFIX
from meshplate_core.jobs import JobStore
from meshplate_core.redis_client import REDIS_FAILURES
from meshplate_core.streams import as_text, decode_traced
from meshplate_core.tracing import span
from worker.attempts import Attempts, Entry, Outcome, Start
from worker.kinds import JobKind, PermanentError
from worker.pipeline import ScriptPipeline

log = logging.getLogger(__name__)

# The longest error kept on a dead-letter entry.
_MAX_ERROR = 1000
# Writing an outcome is tried this often (with these pauses) before the entry is left to be
# claimed again.
_SETTLE_PAUSES_S = (0.1, 0.5, 2.0)
_OUTCOME_NAMES: dict[Outcome, str] = {
    "succeeded": "succeeded",
    "failed": "failed",
    "dead": "dead",
    "queued": "handed_back",
}
# Entries of one consumer given back per round trip at shutdown.
_GIVE_BACK_PAGE = 500


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing job is tried again."""

    max_deliveries: int
    backoff_s: float
    backoff_max_s: float

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)))


@dataclass(eq=False)
class _Job:
    """One delivery of one job, from its entry to its outcome."""

    kind: JobKind[Any]
    entry: Entry
    fields: Mapping[Any, Any]
    event: Any
    job_id: str
    attempt: int = 0
    # Set by the heartbeat while the work runs: another consumer took the job over.
    overtaken: bool = False

    @property
    def log_fields(self) -> dict[str, Any]:
        return {"job_kind": self.kind.name, "job_id": self.job_id}


class Deliveries:
    """Runs the deliveries of every kind for one consumer (this process)."""

    def __init__(
        self,
        jobs: JobStore,
        policy: RetryPolicy,
        *,
        consumer: str,
        claim_idle_s: float,
        concurrency: int,
    ) -> None:
        self._redis = jobs.redis
        self._attempts = Attempts(jobs, ScriptPipeline(jobs.redis), lease_s=claim_idle_s)
        self._policy = policy
        self._consumer = consumer
        self._claim_idle_s = claim_idle_s
        self._concurrency = concurrency
        self._slots: dict[str, asyncio.Semaphore] = {}
        # Jobs at work, with their tasks (what the heartbeat renews, or cancels when overtaken).
        self._working: dict[_Job, asyncio.Task[Any]] = {}
        # Outcomes being written: no cancellation reaches them, and `finish` waits for them.
        self._settling: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._stopping = False
        # Attempts finished, by (kind, outcome): exported as metrics.
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()

    async def deliver(self, kind: JobKind[Any], entry_id: Any, fields: Mapping[Any, Any]) -> None:
        """Handle one entry of `kind`'s stream, as read or claimed by this consumer."""
        entry = Entry(kind.stream, kind.name, self._consumer, as_text(entry_id), kind.dead_stream)
        try:
            event, parent = decode_traced(kind.model, fields)
        except (ValueError, ValidationError, KeyError, TypeError) as exc:
            await self._bury(kind, entry, fields, f"malformed entry: {exc}"[:_MAX_ERROR])
            return
        job = _Job(kind, entry, fields, event, kind.job_id(event))
        slots = self._slots.setdefault(kind.name, asyncio.Semaphore(self._concurrency))
        with contextlib.ExitStack() as held:
            await slots.acquire()
            held.callback(slots.release)
            if self._stopping or (attempts := await self._begin(job)) is None:
                return  # still pending: given back at shutdown, or claimed again once idle
            # The job continues the trace of the request that enqueued it.
            with span(
                f"job {kind.name}",
                parent=parent,
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "redis",
                    "messaging.destination.name": entry.stream,
                    "messaging.consumer.group.name": entry.group,
                    "meshplate.job_id": job.job_id,
                },
            ):
                if attempts[0] > self._policy.max_deliveries:
                    held.close()
                    await self._give_up(job, *attempts)
                else:
                    outcome = await self._work(job)
                    # The slot is free before the outcome is written: the next job's start goes
                    # out with it.
                    held.close()
                    if outcome is not None:
                        await self._shielded(self._settle(job, *outcome))

    def stop_taking(self) -> None:
        """Start nothing more: entries not started yet stay pending until `finish`."""
        self._stopping = True

    async def finish(self, kinds: Sequence[JobKind[Any]], *, hand_back_s: float) -> None:
        """After the subscribers stopped: wait up to `hand_back_s` for outcomes and hand-backs
        still being written, make every entry this consumer still holds in `kinds`' groups
        claimable at once (read but never started, or waiting for a retry), stop the heartbeat."""
        self._stopping = True
        if self._settling:
            _, late = await asyncio.wait(self._settling, timeout=hand_back_s)
            if late:
                log.warning("%d jobs not handed back: they are claimed once idle", len(late))
        try:
            await self._give_back(kinds)
        except REDIS_FAILURES as exc:
            log.warning("could not give back what this process holds: %s", exc)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat

    async def _give_back(self, kinds: Sequence[JobKind[Any]]) -> None:
        for kind in kinds:
            while held := await self._redis.xpending_range(
                kind.stream, kind.name, "-", "+", _GIVE_BACK_PAGE, consumername=self._consumer
            ):
                entries = [
                    Entry(kind.stream, kind.name, self._consumer, as_text(e["message_id"]), "")
                    for e in held
                ]
                await self._attempts.release(entries, idle_s=self._claim_idle_s * 2)
                if len(held) < _GIVE_BACK_PAGE:
                    break

    async def _begin(self, job: _Job) -> tuple[int, str | None] | None:
        """(attempt number, last error) when the job is to run now; None otherwise."""
        start = Start(job.entry, job.job_id, job.kind.owner_id(job.event), job.kind.system)
        try:
            [begun] = await self._attempts.begin([start])
        except REDIS_FAILURES as exc:
            log.warning("could not start the job: %s", exc, extra=job.log_fields)
            return None
        if isinstance(begun, Exception):
            log.error("could not start the job: %s", begun, extra=job.log_fields)
            return None
        if begun.decision == "done":
            log.info("job already %s", begun.status, extra=job.log_fields)
        if begun.decision != "run":
            return None
        job.attempt = begun.attempts
        return begun.attempts, begun.error

    async def _work(self, job: _Job) -> tuple[Outcome, str, float] | None:
        """Run the job: its outcome, the result or error, and the back-off; None when it was
        overtaken. Cancelled at shutdown, it is handed back."""
        task = asyncio.current_task()
        assert task is not None
        self._working[job] = task
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat())
        try:
            result = await job.kind.run(job.event)
        except asyncio.CancelledError:
            if job.overtaken and not self._stopping:
                task.uncancel()
                log.warning("job overtaken by another delivery; abandoned", extra=job.log_fields)
                self.outcomes[job.kind.name, "overtaken"] += 1
                return None
            # Shutdown: hand the job back, out of the cancellation's reach.
            retry_in_s = self._claim_idle_s * 2
            self._shielded(self._settle(job, "queued", "", retry_in_s, job.attempt - 1))
            raise
        except Exception as exc:
            error = _describe(exc)
            if isinstance(exc, PermanentError) or job.attempt >= self._policy.max_deliveries:
                return "dead", error, 0.0
            return "failed", error, self._policy.backoff(job.attempt)
        finally:
            del self._working[job]
        return "succeeded", result, 0.0

    async def _give_up(self, job: _Job, attempts: int, last: str | None) -> None:
        given = attempts - 1
        error = f"gave up after {given} deliveries; last: "
        error = (error + (last or "the worker stopped while running it"))[:_MAX_ERROR]
        await self._shielded(self._settle(job, "dead", error, 0.0, given))

    def _shielded(self, step: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        """Run `step` in a task no cancellation of the caller reaches; `finish` waits for it."""
        task = asyncio.create_task(step)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return asyncio.shield(task)

    async def _settle(
        self, job: _Job, outcome: Outcome, text: str, delay_s: float, attempts: int | None = None
    ) -> None:
        recorded = job.attempt if attempts is None else attempts
        fields = {**job.log_fields, "attempts": recorded}
        dead = None
        if outcome == "dead":
            owner_id = job.kind.owner_id(job.event)
            meta = _dead_meta(job.entry, job.job_id, recorded, text, owner_id, job.kind.system)
            dead = {**_texts(job.fields), **meta}
        for pause in (*_SETTLE_PAUSES_S, None):
            try:
                written = await self._attempts.settle(
                    job.entry,
                    job.job_id,
                    job.attempt,
                    outcome,
                    text=text,
                    delay_s=delay_s,
                    attempts=recorded,
                    dead_fields=dead,
                )
                break
            except REDIS_FAILURES as exc:
                if pause is None:
                    # The entry stays pending: it is claimed again once idle, and run again.
                    log.error("could not record the outcome %s: %s", outcome, exc, extra=fields)
                    return
                await asyncio.sleep(pause)
        self.outcomes[job.kind.name, _OUTCOME_NAMES[outcome] if written else "overtaken"] += 1
        if not written:
            log.warning("outcome %s discarded: the job was taken over", outcome, extra=fields)
        elif outcome == "succeeded":
            log.info("job succeeded", extra=fields)
        elif outcome == "failed":
            log.warning("job failed; retry in %.1f s: %s", delay_s, text, extra=fields)
        elif outcome == "dead":
            log.error("job dead: %s", text, extra=fields)
        else:
            log.info("job handed back", extra=fields)

    async def _bury(
        self, kind: JobKind[Any], entry: Entry, fields: Mapping[Any, Any], error: str
    ) -> None:
        meta = _dead_meta(entry, "", 0, error, None, kind.system)
        try:
            await self._attempts.bury_unreadable(entry, {**_texts(fields), **meta})
        except REDIS_FAILURES as exc:
            log.warning("could not bury a malformed entry: %s", exc, extra={"job_kind": kind.name})
            return
        log.error("job dead: %s", error, extra={"job_kind": kind.name})

    async def _beat(self) -> None:
        # Every third of the claim idle time, one round trip renews every job at work.
        while True:
            await asyncio.sleep(self._claim_idle_s / 3)
            if not (jobs := list(self._working)):
                continue
            try:
                alive = await self._attempts.heartbeat(
                    [(j.entry, j.job_id, j.attempt) for j in jobs]
                )
            except REDIS_FAILURES as exc:
                log.warning("heartbeat failed: %s", exc)
                continue
            for job, answer in zip(jobs, alive, strict=True):
                if isinstance(answer, Exception):
                    log.warning("heartbeat failed: %s", answer, extra=job.log_fields)
                elif not answer and (task := self._working.get(job)) is not None:
                    job.overtaken = True
                    task.cancel()


def _dead_meta(
    entry: Entry, job_id: str, attempts: int, error: str, owner_id: int | None, system: bool
) -> dict[str, Any]:
    return {
        f"{DEAD_PREFIX}stream": entry.stream,
        f"{DEAD_PREFIX}group": entry.group,
        f"{DEAD_PREFIX}entry_id": entry.entry_id,
        f"{DEAD_PREFIX}job_id": job_id,
        f"{DEAD_PREFIX}owner_id": "" if owner_id is None else owner_id,
        f"{DEAD_PREFIX}system": "1" if system else "0",
        f"{DEAD_PREFIX}attempts": attempts,
        f"{DEAD_PREFIX}error": error,
        f"{DEAD_PREFIX}at": datetime.now(UTC).isoformat(),
    }


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    if not isinstance(exc, PermanentError) and exc.__class__.__name__ not in text:
        text = f"{exc.__class__.__name__}: {text}"
    return text[:_MAX_ERROR]


def _texts(fields: Mapping[Any, Any]) -> dict[str, Any]:
    return {as_text(key): value for key, value in fields.items()}
