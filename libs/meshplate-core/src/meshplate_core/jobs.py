"""Job records: what the gateway enqueued and how far the worker got (Redis keys `tasks:job:*`).

One definition, shared by the gateway (which creates a job as `queued` and appends its event to the
job's stream in one MULTI, so no job exists without its event and no event without its record)
and the worker (which moves it to `running`, `succeeded`, `failed` or `dead`). Records expire after
`ttl_s`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel
from redis.asyncio import Redis

from meshplate_core.events import Event
from meshplate_core.streams import encode

Status = Literal["queued", "running", "succeeded", "failed", "dead"]


def _now() -> datetime:
    return datetime.now(UTC)


class Job(BaseModel):
    """A job as the gateway shows it (plus who may see it)."""

    id: str
    status: Status
    result: str | None = None
    error: str | None = None
    attempts: int = 0
    enqueued_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    owner_id: int | None = None


class JobStore:
    """Reads and writes job records."""

    def __init__(self, redis: Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    async def close(self) -> None:
        """Close the Redis client."""
        await self._redis.aclose()

    @staticmethod
    def key(job_id: str) -> str:
        """The Redis key of a job's record."""
        return f"tasks:job:{job_id}"

    async def enqueue(self, job_id: str, event: Event, *, owner_id: int | None) -> Job:
        """Record a queued job and append its event to its stream, atomically."""
        job = Job(id=job_id, status="queued", enqueued_at=_now(), owner_id=owner_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.key(job_id), job.model_dump_json(), ex=self._ttl_s)
            pipe.xadd(event.STREAM, encode(event))  # type: ignore[arg-type]
            await pipe.execute()
        return job

    async def get(self, job_id: str) -> Job | None:
        """A job's record, if it exists (and has not expired)."""
        raw = await self._redis.get(self.key(job_id))
        return Job.model_validate_json(raw) if raw is not None else None

    async def update(self, job_id: str, **changes: object) -> Job | None:
        """Change fields of a job's record (None when it is gone)."""
        job = await self.get(job_id)
        if job is None:
            return None
        changed = job.model_copy(update=changes)
        await self._redis.set(self.key(job_id), changed.model_dump_json(), ex=self._ttl_s)
        return changed

    async def started(self, job_id: str) -> Job | None:
        """The worker took the job (one more attempt)."""
        job = await self.get(job_id)
        if job is None:
            return None
        return await self.update(
            job_id, status="running", started_at=_now(), attempts=job.attempts + 1
        )

    async def succeeded(self, job_id: str, result: str) -> Job | None:
        """The job is done."""
        return await self.update(
            job_id, status="succeeded", result=result, error=None, finished_at=_now()
        )
