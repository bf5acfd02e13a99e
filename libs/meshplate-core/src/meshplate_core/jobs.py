"""Job records: what was enqueued and how far the worker got (Redis hashes `tasks:job:<id>`).

One definition, shared by the gateway (which creates a job as `queued` and appends its event to the
job's stream in one MULTI, so no job exists without its event and no event without its record)
and the worker, which moves records along together with their stream entries in its own scripts
(worker.attempts). Records expire `ttl_s` after their last change.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from redis.asyncio import Redis

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


# KEYS[1] record, KEYS[2] stream. ARGV: record fields (flat), ttl, then the event's fields (flat);
# ARGV[1] is the number of record fields * 2.
_ENQUEUE_ONCE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local n = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 2, n + 1))
redis.call('EXPIRE', KEYS[1], ARGV[n + 2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, n + 3))
return 1
"""


class JobStore:
    """Reads and writes job records."""

    def __init__(self, redis: Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._enqueue_once = redis.register_script(_ENQUEUE_ONCE)

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
        """Record a queued job and append its event to its stream, atomically."""
        job = Job(id=job_id, status="queued", enqueued_at=_now(), owner_id=owner_id, system=system)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(job_id))
            pipe.hset(self.key(job_id), mapping=record_fields(job))
            pipe.expire(self.key(job_id), self._ttl_s)
            pipe.xadd(event.STREAM, encode(event))  # type: ignore[arg-type]
            await pipe.execute()
        return job

    async def enqueue_once(self, job_id: str, event: Event, *, system: bool = False) -> bool:
        """Like `enqueue`, but only if no record of `job_id` exists (scheduled jobs: one per
        slot, however many processes try); whether this call enqueued it."""
        job = Job(id=job_id, status="queued", enqueued_at=_now(), system=system)
        record = [item for pair in record_fields(job).items() for item in pair]
        event_fields = [item for pair in encode(event).items() for item in pair]
        done = await self._enqueue_once(
            keys=[self.key(job_id), event.STREAM],
            args=[len(record), *record, self._ttl_s, *event_fields],
        )
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


def record_fields(job: Job) -> dict[Any, Any]:
    """A record's hash fields (absent values are absent fields)."""
    return {
        name: ("1" if value else "0") if isinstance(value, bool) else _encode(value)
        for name, value in job.model_dump().items()
        if value is not None
    }


def _encode(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)
