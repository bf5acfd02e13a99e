"""At-least-once handling of one stream entry, for every job kind.

An entry is acknowledged only together with its outcome: `succeeded`, or `dead` with the entry
copied to the kind's dead-letter stream. A failed attempt is not acknowledged: the entry stays
pending, its record says `failed` with the time of the next try, and the claiming subscriber
delivers it again once it has been idle long enough and that time has passed, so retries back off
exponentially and survive a crash of the process that failed. Deliveries are counted on the job's
record; the delivery after the last allowed one goes to the dead-letter stream without running,
which also ends a job that kills every worker that runs it.

While a job runs, a heartbeat keeps its entry fresh (so no other consumer claims it) and renews
the record's lease (so a second entry of the same event waits instead of running it twice). An
attempt that was overtaken anyway (this process stalled longer than the claim idle time and
another took the job) is cancelled and writes nothing. Interrupted by shutdown, an attempt is
handed back: the record says `queued` again, uncounted, and the entry is claimable at once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError
from redis.exceptions import RedisError

from meshplate_core.jobs import JobStore
from meshplate_core.streams import as_text, decode, trace_context
from meshplate_core.tracing import span
from worker.attempts import Attempts, Entry, Outcome
from worker.kind import JobKind
from worker.outcomes import PermanentError

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
        self, jobs: JobStore, policy: RetryPolicy, *, consumer: str, claim_idle_s: float
    ) -> None:
        self._redis = jobs.redis
        self._attempts = Attempts(jobs, lease_s=claim_idle_s)
        self._policy = policy
        self._consumer = consumer
        self._claim_idle_s = claim_idle_s
        self._active: set[asyncio.Task[Any]] = set()
        # Attempts finished, by (kind, outcome): exported as metrics.
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
        self._settling: set[asyncio.Task[None]] = set()

    async def deliver(self, kind: JobKind[Any], entry_id: Any, fields: Mapping[Any, Any]) -> None:
        """Handle one delivery of `entry_id` of `kind`'s stream."""
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        try:
            await self._deliver(kind, self._entry(kind, entry_id), fields)
        finally:
            self._active.discard(task)

    async def drain(self, timeout_s: float) -> None:
        """Wait (up to `timeout_s`) for deliveries and hand-backs still under way: at shutdown,
        before the Redis client closes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while pending := self._active | self._settling:
            if (remaining := deadline - loop.time()) <= 0:
                raise TimeoutError
            await asyncio.wait(pending, timeout=remaining)

    def _entry(self, kind: JobKind[Any], entry_id: Any) -> Entry:
        return Entry(
            stream=kind.stream,
            group=kind.name,
            consumer=self._consumer,
            entry_id=as_text(entry_id),
            dead_stream=kind.dead_stream,
        )

    async def _deliver(self, kind: JobKind[Any], entry: Entry, fields: Mapping[Any, Any]) -> None:
        try:
            event = decode(kind.model, fields)
        except (ValueError, ValidationError, KeyError, TypeError) as exc:
            error = f"malformed entry: {exc}"[:_MAX_ERROR]
            await self._attempts.bury_unreadable(
                entry, {**_texts(fields), **_dead_meta(entry, "", 0, error, None, kind.system)}
            )
            log.error("job dead: %s", error, extra={"job_kind": kind.name})
            return
        job_id = kind.job_id(event)
        # The job continues the trace of the request that enqueued it.
        with span(
            f"job {kind.name}",
            parent=trace_context(fields),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "redis",
                "messaging.destination.name": entry.stream,
                "messaging.consumer.group.name": entry.group,
                "meshplate.job_id": job_id,
            },
        ):
            await self._run(kind, entry, fields, event, job_id)

    async def _run(
        self, kind: JobKind[Any], entry: Entry, fields: Mapping[Any, Any], event: Any, job_id: str
    ) -> None:
        owner_id = kind.owner_id(event)
        begun = await self._attempts.begin(entry, job_id, owner_id=owner_id, system=kind.system)
        if begun.decision == "done":
            # Finished before (a duplicate entry, or a crash after the outcome): just ack.
            await self._redis.xack(entry.stream, entry.group, entry.entry_id)
            log.info("job already %s", begun.status, extra=_fields(kind, job_id))
            return
        if begun.decision in ("waiting", "lost"):
            return
        dead_meta = {
            **_texts(fields),
            **_dead_meta(entry, job_id, begun.attempts, "", owner_id, kind.system),
        }
        if begun.attempts > self._policy.max_deliveries:
            given = begun.attempts - 1
            last = begun.error or "the worker stopped while running it"
            error = f"gave up after {given} deliveries; last: {last}"[:_MAX_ERROR]
            await self._settle(
                kind,
                entry,
                job_id,
                begun.attempts,
                "dead",
                text=error,
                attempts=given,
                dead_fields={
                    **dead_meta,
                    f"{DEAD_PREFIX}attempts": given,
                    f"{DEAD_PREFIX}error": error,
                },
            )
            return
        await self._attempt(kind, entry, event, job_id, begun.attempts, dead_meta)

    async def _attempt(
        self,
        kind: JobKind[Any],
        entry: Entry,
        event: Any,
        job_id: str,
        attempt: int,
        dead_meta: dict[str, Any],
    ) -> None:
        work = asyncio.ensure_future(kind.run(event))
        overtaken = asyncio.Event()
        heartbeat = asyncio.create_task(
            self._heartbeat(kind, entry, job_id, attempt, work, overtaken)
        )
        try:
            result = await work
        except asyncio.CancelledError:
            if overtaken.is_set() and not _being_cancelled():
                log.warning(
                    "job overtaken by another delivery; abandoned", extra=_fields(kind, job_id)
                )
                self.outcomes[kind.name, "overtaken"] += 1
                return
            # Shutdown: hand the job back, in a task of its own that the cancellation cannot
            # reach; drain() waits for it before Redis is closed.
            self._spawn(
                self._settle(
                    kind,
                    entry,
                    job_id,
                    attempt,
                    "queued",
                    delay_s=self._claim_idle_s * 2,
                    attempts=attempt - 1,
                )
            )
            raise
        except Exception as exc:
            error = _describe(exc)
            if isinstance(exc, PermanentError) or attempt >= self._policy.max_deliveries:
                await self._settle(
                    kind,
                    entry,
                    job_id,
                    attempt,
                    "dead",
                    text=error,
                    dead_fields={**dead_meta, f"{DEAD_PREFIX}error": error},
                )
            else:
                delay = self._policy.backoff(attempt)
                await self._settle(
                    kind, entry, job_id, attempt, "failed", text=error, delay_s=delay
                )
        else:
            await self._settle(kind, entry, job_id, attempt, "succeeded", text=result)
        finally:
            heartbeat.cancel()

    def _spawn(self, step: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(step)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(
        self,
        kind: JobKind[Any],
        entry: Entry,
        job_id: str,
        attempt: int,
        outcome: Outcome,
        **details: Any,
    ) -> None:
        fields = {**_fields(kind, job_id), "attempts": details.get("attempts", attempt)}
        for pause in (*_SETTLE_PAUSES_S, None):
            try:
                written = await self._attempts.settle(entry, job_id, attempt, outcome, **details)
                break
            except (RedisError, OSError) as exc:
                if pause is None:
                    # The entry stays pending: it is claimed again once idle, and run again.
                    log.error("could not record the outcome %s: %s", outcome, exc, extra=fields)
                    return
                await asyncio.sleep(pause)
        self.outcomes[kind.name, _OUTCOME_NAMES[outcome] if written else "overtaken"] += 1
        if not written:
            log.warning("outcome %s discarded: the job was taken over", outcome, extra=fields)
        elif outcome == "succeeded":
            log.info("job succeeded", extra=fields)
        elif outcome == "failed":
            log.warning(
                "job failed; retry in %.1f s: %s", details["delay_s"], details["text"], extra=fields
            )
        elif outcome == "dead":
            log.error("job dead: %s", details["text"], extra=fields)
        else:
            log.info("job handed back", extra=fields)

    async def _heartbeat(
        self,
        kind: JobKind[Any],
        entry: Entry,
        job_id: str,
        attempt: int,
        work: asyncio.Future[Any],
        overtaken: asyncio.Event,
    ) -> None:
        while True:
            await asyncio.sleep(self._claim_idle_s / 3)
            try:
                alive = await self._attempts.heartbeat(entry, job_id, attempt)
            except (RedisError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc, extra=_fields(kind, job_id))
                continue
            if not alive:
                overtaken.set()
                work.cancel()
                return


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


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


def _fields(kind: JobKind[Any], job_id: str) -> dict[str, Any]:
    return {"job_kind": kind.name, "job_id": job_id}


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    if not isinstance(exc, PermanentError) and exc.__class__.__name__ not in text:
        text = f"{exc.__class__.__name__}: {text}"
    return text[:_MAX_ERROR]


def _texts(fields: Mapping[Any, Any]) -> dict[str, Any]:
    return {as_text(key): value for key, value in fields.items()}
