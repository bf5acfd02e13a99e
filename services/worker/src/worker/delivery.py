"""At-least-once handling of one stream entry, for every job kind.

An entry is acknowledged only together with its outcome (one MULTI): `succeeded`, or `dead` with
the entry copied to the kind's dead-letter stream. A failed attempt is not acknowledged: the entry
stays pending, its record says `failed` with the time of the next try, and the claiming
subscriber delivers it again once it has been idle long enough and that time has passed, so
retries back off exponentially and survive a crash of the process that failed. Deliveries are
counted on the job's record (Redis's own delivery counter also counts claims that only found a
back-off still running); the delivery after the last allowed one goes to the dead-letter stream
without running, which also ends a job that kills every worker that runs it.

While a job runs, a heartbeat keeps its entry fresh (so no other consumer claims it) and renews
the record's lease (so a second entry of the same event waits instead of running it twice).
Interrupted by shutdown, an attempt is handed back: the record says `queued` again, uncounted,
and the entry is made claimable at once by the other workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from pydantic import ValidationError
from redis.exceptions import RedisError

from meshplate_core.jobs import JobStore
from meshplate_core.streams import decode
from worker.kind import JobKind
from worker.outcomes import PermanentError

log = logging.getLogger(__name__)

# Fields added to an entry on its way to a dead-letter stream.
DEAD_PREFIX = "dead."
# Claims only if the entry is still this consumer's, then renews the record's lease.
# KEYS[1] stream, KEYS[2] record. ARGV: group, consumer, entry id, lease end (ms).
_HEARTBEAT = """
local mine = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #mine == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
redis.call('HSET', KEYS[2], 'lease_ms', ARGV[4])
return 1
"""
_MAX_ERROR = 1000


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
        self._jobs = jobs
        self._redis = jobs.redis
        self._policy = policy
        self._consumer = consumer
        self._claim_idle_s = claim_idle_s
        self._heartbeat_script = jobs.redis.register_script(_HEARTBEAT)

    async def deliver(self, kind: JobKind[Any], entry_id: Any, fields: Mapping[Any, Any]) -> None:
        """Handle one delivery of `entry_id` of `kind`'s stream."""
        try:
            event = decode(kind.model, fields)
        except (ValueError, ValidationError, KeyError, TypeError) as exc:
            await self._bury(kind, entry_id, fields, None, 0, f"malformed entry: {exc}")
            return
        job_id = kind.job_id(event)
        begun = await self._jobs.begin(
            job_id, owner_id=kind.owner_id(event), system=kind.system, lease_s=self._claim_idle_s
        )
        if begun.decision == "done":
            # Finished before (a duplicate entry, or a crash after the outcome): just ack.
            await self._redis.xack(kind.stream, kind.name, entry_id)
            log.info("job already %s", begun.status, extra=_fields(kind, job_id))
            return
        if begun.decision == "waiting":
            return
        if begun.attempts > self._policy.max_deliveries:
            last = begun.error or "the worker stopped while running it"
            error = f"gave up after {begun.attempts - 1} deliveries; last: {last}"
            await self._bury(kind, entry_id, fields, job_id, begun.attempts - 1, error)
            return
        await self._attempt(kind, entry_id, fields, event, job_id, begun.attempts)

    async def _attempt(
        self,
        kind: JobKind[Any],
        entry_id: Any,
        fields: Mapping[Any, Any],
        event: Any,
        job_id: str,
        attempt: int,
    ) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(kind, entry_id, job_id))
        try:
            result = await kind.run(event)
        except asyncio.CancelledError:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2):
                await self._hand_back(kind, entry_id, job_id)
            raise
        except PermanentError as exc:
            await self._bury(kind, entry_id, fields, job_id, attempt, _describe(exc))
        except Exception as exc:
            error = _describe(exc)
            if attempt >= self._policy.max_deliveries:
                await self._bury(kind, entry_id, fields, job_id, attempt, error)
            else:
                await self._retry_later(kind, job_id, attempt, error)
        else:
            async with self._redis.pipeline(transaction=True) as pipe:
                self._jobs.succeeded(pipe, job_id, result)
                pipe.xack(kind.stream, kind.name, entry_id)
                await pipe.execute()
            log.info("job succeeded", extra={**_fields(kind, job_id), "attempts": attempt})
        finally:
            heartbeat.cancel()

    async def _retry_later(self, kind: JobKind[Any], job_id: str, attempt: int, error: str) -> None:
        delay = self._policy.backoff(attempt)
        async with self._redis.pipeline(transaction=True) as pipe:
            self._jobs.failed(pipe, job_id, error, retry_in_s=delay)
            await pipe.execute()
        log.warning(
            "job failed; retry in %.1f s: %s",
            delay,
            error,
            extra={**_fields(kind, job_id), "attempts": attempt},
        )

    async def _bury(
        self,
        kind: JobKind[Any],
        entry_id: Any,
        fields: Mapping[Any, Any],
        job_id: str | None,
        attempts: int,
        error: str,
    ) -> None:
        """Acknowledge the entry with a copy on the dead-letter stream (and the record dead)."""
        dead = {
            **fields,
            f"{DEAD_PREFIX}stream": kind.stream,
            f"{DEAD_PREFIX}group": kind.name,
            f"{DEAD_PREFIX}entry_id": _text(entry_id),
            f"{DEAD_PREFIX}job_id": job_id or "",
            f"{DEAD_PREFIX}attempts": attempts,
            f"{DEAD_PREFIX}error": error,
            f"{DEAD_PREFIX}at": datetime.now(UTC).isoformat(),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            if job_id is not None:
                self._jobs.dead(pipe, job_id, error)
            pipe.xadd(kind.dead_stream, dead)
            pipe.xack(kind.stream, kind.name, entry_id)
            await pipe.execute()
        log.error(
            "job dead: %s", error, extra={**_fields(kind, job_id or ""), "attempts": attempts}
        )

    async def _hand_back(self, kind: JobKind[Any], entry_id: Any, job_id: str) -> None:
        """Give an interrupted attempt back: idle enough for any other consumer to claim now."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.xclaim(
                    kind.stream,
                    kind.name,
                    self._consumer,
                    0,
                    [entry_id],
                    idle=int(self._claim_idle_s * 1000) * 2,
                    justid=True,
                )
                self._jobs.handed_back(pipe, job_id)
                await pipe.execute()
            log.info("job handed back", extra=_fields(kind, job_id))
        except (RedisError, OSError) as exc:
            log.warning("could not hand back: %s", exc, extra=_fields(kind, job_id))

    async def _heartbeat(self, kind: JobKind[Any], entry_id: Any, job_id: str) -> None:
        interval = self._claim_idle_s / 3
        while True:
            await asyncio.sleep(interval)
            lease_end = int((datetime.now(UTC).timestamp() + self._claim_idle_s) * 1000)
            try:
                mine = await self._heartbeat_script(
                    keys=[kind.stream, JobStore.key(job_id)],
                    args=[kind.name, self._consumer, entry_id, lease_end],
                )
            except (RedisError, OSError) as exc:
                log.warning("heartbeat failed: %s", exc, extra=_fields(kind, job_id))
                continue
            if not mine:
                log.warning("job was claimed by another consumer", extra=_fields(kind, job_id))
                return


def _fields(kind: JobKind[Any], job_id: str) -> dict[str, str]:
    return {"job_kind": kind.name, "job_id": job_id}


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    if not isinstance(exc, PermanentError) and exc.__class__.__name__ not in text:
        text = f"{exc.__class__.__name__}: {text}"
    return text[:_MAX_ERROR]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
