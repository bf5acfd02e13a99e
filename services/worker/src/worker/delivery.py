"""At-least-once handling of stream entries, for every job kind.

An entry is acknowledged only together with its outcome: `succeeded`, or `dead` with the entry
copied to the kind's dead-letter stream. A failed attempt is not acknowledged: the entry stays
pending, its record says `failed` with the time of the next try, and the claiming subscriber
delivers it again once it has been idle long enough and that time has passed, so retries back off
exponentially and survive a crash of the process that failed. Deliveries are counted on the job's
record; the delivery after the last allowed one goes to the dead-letter stream without running,
which also ends a job that kills every worker that runs it.

Entries come in batches (as read or claimed); each starts once one of its kind's slots is free
(worker.running), the starts of a batch in one round trip, and runs in a task of its own. While
jobs run, the heartbeat keeps their entries fresh (so no other consumer claims them) and renews
their leases (so a second entry of the same event waits instead of running it twice). An attempt
that was overtaken anyway (this process stalled longer than the claim idle time and another took
the job) is cancelled and writes nothing. At shutdown, entries read but not started go back to
their group at once, claimable by anyone; running attempts get a grace period, then are handed
back: the record says `queued` again, uncounted, and the entry is claimable at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError
from redis.exceptions import RedisError

from meshplate_core.jobs import JobStore
from meshplate_core.streams import as_text, decode_traced
from meshplate_core.tracing import span
from worker.attempts import Attempts, Begun, Entry, Outcome, Start
from worker.kind import JobKind
from worker.outcomes import PermanentError
from worker.pipeline import ScriptPipeline
from worker.running import Delivery, Running

log = logging.getLogger(__name__)

# Fields added to an entry on its way to a dead-letter stream.
DEAD_PREFIX = "dead."
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


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failing job is tried again."""

    max_deliveries: int
    backoff_s: float
    backoff_max_s: float

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based)."""
        return float(min(self.backoff_max_s, self.backoff_s * 2 ** (attempt - 1)))


class Deliveries:
    """Runs deliveries of every kind for one consumer (this process)."""

    def __init__(
        self,
        jobs: JobStore,
        policy: RetryPolicy,
        *,
        consumer: str,
        claim_idle_s: float,
        concurrency: int,
    ) -> None:
        self._attempts = Attempts(jobs, ScriptPipeline(jobs.redis), lease_s=claim_idle_s)
        self._running = Running(
            self._attempts.heartbeat, concurrency=concurrency, heartbeat_s=claim_idle_s / 3
        )
        self._policy = policy
        self._consumer = consumer
        self._claim_idle_s = claim_idle_s
        # Attempts finished, by (kind, outcome): exported as metrics.
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()

    async def take(
        self, kind: JobKind[Any], entries: Sequence[tuple[Any, Mapping[Any, Any]]]
    ) -> None:
        """Start the jobs of `entries` (entry id, fields) of `kind`'s stream, each once a slot is
        free; returns when all have started or been decided (done before, waiting, buried)."""
        jobs = []
        for entry_id, fields in entries:
            entry = self._entry(kind, entry_id)
            try:
                event, parent = decode_traced(kind.model, fields)
            except (ValueError, ValidationError, KeyError, TypeError) as exc:
                await self._bury(kind, entry, fields, f"malformed entry: {exc}"[:_MAX_ERROR])
                continue
            jobs.append(Delivery(kind, entry, fields, event, kind.job_id(event), parent))
        while jobs:
            if not (free := await self._running.slots(kind, len(jobs))):
                await self._release(jobs)
                return
            await self._begin(kind, jobs[:free])
            jobs = jobs[free:]

    def stop_taking(self) -> None:
        """Start nothing more: entries waiting for a slot go back to their group."""
        self._running.stop_starting()

    async def finish(self, *, grace_s: float, hand_back_s: float) -> None:
        """At shutdown: running jobs get `grace_s` to finish; those still running are then
        cancelled and handed back (waited for up to `hand_back_s`) before Redis may close."""
        await self._running.finish(grace_s=grace_s, hand_back_s=hand_back_s)

    def _entry(self, kind: JobKind[Any], entry_id: Any) -> Entry:
        return Entry(
            stream=kind.stream,
            group=kind.name,
            consumer=self._consumer,
            entry_id=as_text(entry_id),
            dead_stream=kind.dead_stream,
        )

    async def _bury(
        self, kind: JobKind[Any], entry: Entry, fields: Mapping[Any, Any], error: str
    ) -> None:
        meta = _dead_meta(entry, "", 0, error, None, kind.system)
        try:
            await self._attempts.bury_unreadable(entry, {**_texts(fields), **meta})
        except (RedisError, OSError) as exc:
            log.warning("could not bury a malformed entry: %s", exc, extra={"job_kind": kind.name})
            return
        log.error("job dead: %s", error, extra={"job_kind": kind.name})

    async def _release(self, jobs: Sequence[Delivery]) -> None:
        try:
            await self._attempts.release([job.entry for job in jobs], idle_s=self._claim_idle_s * 2)
        except (RedisError, OSError) as exc:
            # They stay this consumer's until idle long enough to be claimed.
            log.warning("could not give back %d unstarted entries: %s", len(jobs), exc)

    async def _begin(self, kind: JobKind[Any], jobs: Sequence[Delivery]) -> None:
        starts = [
            Start(job.entry, job.job_id, kind.owner_id(job.event), kind.system) for job in jobs
        ]
        try:
            decisions = await self._attempts.begin(starts)
        except (RedisError, OSError) as exc:
            # Still pending: claimed again once idle.
            self._running.give_back(kind, len(jobs))
            log.warning("could not start %d jobs: %s", len(jobs), exc)
            return
        for job, begun in zip(jobs, decisions, strict=True):
            if isinstance(begun, Exception):
                self._running.give_back(kind)
                log.error("could not start the job: %s", begun, extra=job.log_fields)
            elif begun.decision == "run":
                job.attempt = begun.attempts
                self._running.start(job, self._run(job, begun))
            else:
                self._running.give_back(kind)
                if begun.decision == "done":
                    log.info("job already %s", begun.status, extra=job.log_fields)

    async def _run(self, job: Delivery, begun: Begun) -> None:
        # The job continues the trace of the request that enqueued it.
        with span(
            f"job {job.kind.name}",
            parent=job.parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": job.entry.stream,
                "messaging.consumer.group.name": job.entry.group,
                "meshplate.job_id": job.job_id,
            },
        ):
            if begun.attempts > self._policy.max_deliveries:
                await self._give_up(job, begun)
            else:
                await self._attempt(job)

    async def _give_up(self, job: Delivery, begun: Begun) -> None:
        self._running.worked(job)
        given = begun.attempts - 1
        last = begun.error or "the worker stopped while running it"
        error = f"gave up after {given} deliveries; last: {last}"[:_MAX_ERROR]
        dead = self._dead_fields(job, error)
        dead[f"{DEAD_PREFIX}attempts"] = given
        await self._settle(job, "dead", text=error, attempts=given, dead_fields=dead)

    async def _attempt(self, job: Delivery) -> None:
        try:
            result = await job.kind.run(job.event)
        except asyncio.CancelledError:
            if job.overtaken and not job.handing_back:
                log.warning("job overtaken by another delivery; abandoned", extra=job.log_fields)
                self.outcomes[job.kind.name, "overtaken"] += 1
                return
            # Shutdown: hand the job back (in a task the cancellation cannot reach).
            self._running.hand_back(
                self._settle(
                    job, "queued", delay_s=self._claim_idle_s * 2, attempts=job.attempt - 1
                )
            )
            raise
        except Exception as exc:
            self._running.worked(job)
            error = _describe(exc)
            if isinstance(exc, PermanentError) or job.attempt >= self._policy.max_deliveries:
                await self._settle(
                    job, "dead", text=error, dead_fields=self._dead_fields(job, error)
                )
            else:
                delay = self._policy.backoff(job.attempt)
                await self._settle(job, "failed", text=error, delay_s=delay)
        else:
            self._running.worked(job)
            await self._settle(job, "succeeded", text=result)

    def _dead_fields(self, job: Delivery, error: str) -> dict[str, Any]:
        owner_id = job.kind.owner_id(job.event)
        return {
            **_texts(job.fields),
            **_dead_meta(job.entry, job.job_id, job.attempt, error, owner_id, job.kind.system),
        }

    async def _settle(
        self,
        job: Delivery,
        outcome: Outcome,
        *,
        text: str = "",
        delay_s: float = 0.0,
        attempts: int | None = None,
        dead_fields: Mapping[str, Any] | None = None,
    ) -> None:
        recorded = job.attempt if attempts is None else attempts
        fields = {**job.log_fields, "attempts": recorded}
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
                    dead_fields=dead_fields,
                )
                break
            except (RedisError, OSError) as exc:
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
