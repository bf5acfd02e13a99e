"""Job records: what was enqueued and how far the worker got (Redis hashes `{jobs}:job:<id>`,
under the job system's hash tag, meshplate_core.events.JOBS_TAG, with the streams).

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
from redis.exceptions import NoScriptError

from meshplate_core.events import JOBS_TAG, Event
from meshplate_core.redis_client import RedisClient
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


# The newest jobs by when their record was made (a sorted set of ids, scored in ms on Redis's
# clock), for the admin panel: at most RECENT_KEPT, the oldest dropped as new ones come.
RECENT_KEY = f"{JOBS_TAG}:recent"
RECENT_KEPT = 10_000
# The job kinds the workers run (a set the workers write at start).
KINDS_KEY = f"{JOBS_TAG}:kinds"


def note_recent(key: int, job_id: int, ttl: int) -> str:
    """Lua that notes the job id ARGV[job_id] as made now in the recent jobs, KEYS[key], and
    drops the ids older than a record lives (ARGV[ttl], s) or beyond the newest RECENT_KEPT (the
    enqueue script's, a replay's, and the worker's first delivery of an event-driven job)."""
    return f"""
local clock = redis.call('TIME')
local now_ms = clock[1] * 1000 + math.floor(clock[2] / 1000)
redis.call('ZADD', KEYS[{key}], now_ms, ARGV[{job_id}])
redis.call('ZREMRANGEBYSCORE', KEYS[{key}], '-inf', '(' .. (now_ms - ARGV[{ttl}] * 1000))
redis.call('ZREMRANGEBYRANK', KEYS[{key}], 0, -{RECENT_KEPT + 1})
"""


# KEYS: record, stream, recent jobs. ARGV: "1" to enqueue only if no record exists (else an old
# record is replaced), ttl (s), job id, enqueued at (ISO), owner id or "", "1" for a system job,
# then the event's fields (flat). Few arguments: packing them is most of what a call costs the
# caller.
_ENQUEUE = (
    """
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
"""
    + note_recent(key=3, job_id=3, ttl=2)
    + """
return 1
"""
)
_ENQUEUE_SHA = hashlib.sha1(_ENQUEUE.encode()).hexdigest()


class JobStore:
    """Reads and writes job records."""

    def __init__(self, redis: RedisClient, *, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

    @property
    def redis(self) -> RedisClient:
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
        return f"{JOBS_TAG}:job:{job_id}"

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
        keys = [self.key(job.id), event.STREAM, RECENT_KEY]
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
        return _job(await self._redis.hgetall(self.key(job_id)))

    async def recent(self, skip: int, count: int) -> tuple[list[Job], int]:
        """The newest jobs whose records still exist, newest first, after skipping `skip`; and
        how many ids the index holds (records that expired meanwhile included)."""
        total = int(await self._redis.zcard(RECENT_KEY))
        if count <= 0:
            return [], total
        ids: list[Any] = await self._redis.zrevrange(RECENT_KEY, skip, skip + count - 1)
        if not ids:
            return [], total
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.key(as_text(job_id)))
            records: list[Any] = await pipe.execute()
        return [job for job in map(_job, records) if job is not None], total

    async def register_kinds(self, names: list[str]) -> None:
        """Say which job kinds a worker runs (at its start)."""
        if names:
            await self._redis.sadd(KINDS_KEY, *names)

    async def kinds(self) -> list[str]:
        """Every job kind a worker said it runs."""
        names: Any = await self._redis.smembers(KINDS_KEY)
        return sorted(as_text(name) for name in names)


def _job(raw: dict[Any, Any]) -> Job | None:
    if not raw or b"status" not in raw:
        return None
    fields = {as_text(k): as_text(v) for k, v in raw.items()}
    return Job.model_validate(
        {name: value for name, value in fields.items() if name in Job.model_fields}
    )
