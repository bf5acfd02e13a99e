"""Job records: what was enqueued and how far the worker got (Redis hashes `tasks:job:<id>`).

One definition, shared by the gateway (which creates a job as `queued` and appends its event to the
job's stream in one script, so no job exists without its event and no event without its record)
and the worker, which moves records along together with their stream entries in its own scripts
(worker.attempts). Records expire `ttl_s` after their last change.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from meshplate_core.events import Event
from meshplate_core.streams import as_text, encode

Status = Literal["queued", "running", "succeeded", "failed", "dead"]


def _now() -> datetime:
    return datetime.now(UTC)


class Job(BaseModel):
    """A job as the gateway shows it, plus who may see it."""

    id: str
    status: Status
    result: str | None = None
    error: str | None = None
    attempts: int = 0
    enqueued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Who enqueued it: None is anyone (an anonymous caller's task).
    owner_id: int | None = None
    # The system's own jobs (cleanup, reports) are visible to superusers only.
    system: bool = False


# KEYS: record, stream. ARGV: "1" to enqueue only if no record exists (else an old record is
# replaced), ttl (s), job id, enqueued at (ISO), owner id or "", "1" for a system job, then the
# event's fields (flat). Few arguments: packing them is most of what a call costs the caller.
_ENQUEUE = """
if ARGV[1] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
else
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'id', ARGV[3], 'status', 'queued', 'attempts', 0,
           'enqueued_at', ARGV[4], 'system', ARGV[6])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'owner_id', ARGV[5]) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 7))
return 1
"""
_ENQUEUE_SHA = hashlib.sha1(_ENQUEUE.encode()).hexdigest()


class JobStore:
    """Reads and writes job records."""

    def __init__(self, redis: Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    @property
    def redis(self) -> Redis:
        """The client the records are kept with (the worker's scripts use it too)."""
        return self._redis

    @property
    def ttl_s(self) -> int:
        """How long a record stays after its last change."""
        return self._ttl_s

    async def close(self) -> None:
        """Close the Redis client."""
        await self._redis.aclose()

    @staticmethod
    def key(job_id: str) -> str:
        """The Redis key of a job's record."""
        return f"tasks:job:{job_id}"

    async def enqueue(
        self, job_id: str, event: Event, *, owner_id: int | None, system: bool = False
    ) -> Job:
        """Record a queued job and append its event to its stream, atomically (one script: the
        cheapest round trip, as every API task pays it)."""
        job = Job.model_construct(
            id=job_id, status="queued", enqueued_at=_now(), owner_id=owner_id, system=system
        )
        await self._enqueue(job, event, once=False)
        return job

    async def enqueue_once(self, job_id: str, event: Event, *, system: bool = False) -> bool:
        """Like `enqueue`, but only if no record of `job_id` exists (scheduled jobs: one per
        slot, however many processes try); whether this call enqueued it."""
        job = Job.model_construct(id=job_id, status="queued", enqueued_at=_now(), system=system)
        return await self._enqueue(job, event, once=True)

    async def _enqueue(self, job: Job, event: Event, *, once: bool) -> bool:
        keys = [self.key(job.id), event.STREAM]
        args = [
            "1" if once else "0",
            self._ttl_s,
            job.id,
            job.enqueued_at.isoformat(),
            "" if job.owner_id is None else job.owner_id,
            "1" if job.system else "0",
            *(item for pair in encode(event).items() for item in pair),
        ]
        try:
            done = await self._redis.evalsha(_ENQUEUE_SHA, len(keys), *keys, *args)
        except NoScriptError:
            # Not cached by this Redis yet (or flushed): EVAL sends the text and caches it.
            done = await self._redis.eval(_ENQUEUE, len(keys), *keys, *args)
        return bool(done)

    async def get(self, job_id: str) -> Job | None:
        """A job's record, if it exists (and has not expired)."""
        raw: dict[Any, Any] = await self._redis.hgetall(self.key(job_id))
        if not raw or b"status" not in raw:
            return None
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        return Job.model_validate(
            {name: value for name, value in fields.items() if name in Job.model_fields}
        )
