"""Job records: what was enqueued and how far the worker got (Redis hashes `tasks:job:<id>`).

One definition, shared by the gateway (which creates a job as `queued` and appends its event to the
job's stream in one MULTI, so no job exists without its event and no event without its record)
and the worker, whose every transition is one atomic step: `begin` is a script that decides
whether a delivery may run (and counts it), and the outcomes are written inside the worker's
MULTI together with the stream acknowledgement, so a record never says `succeeded` for an entry
that will be delivered again. Records expire `ttl_s` after their last change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from meshplate_core.events import Event
from meshplate_core.streams import encode

Status = Literal["queued", "running", "succeeded", "failed", "dead"]
FINISHED: tuple[Status, ...] = ("succeeded", "dead")


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


@dataclass(frozen=True)
class Begun:
    """What `begin` decided for one delivery.

    `run`: go ahead, this is attempt `attempts`. `done`: finished before (`status` says how),
    acknowledge and skip. `waiting`: a retry whose back-off has not passed, or another delivery
    of the same job still running under its lease: leave the entry pending.
    """

    decision: Literal["run", "done", "waiting"]
    attempts: int
    status: str | None
    error: str | None


# KEYS[1] record. ARGV: id, now (ISO), now (ms), ttl (s), owner id or "", "1" if system, lease (ms).
_BEGIN = """
local status = redis.call('HGET', KEYS[1], 'status')
local now_ms = tonumber(ARGV[3])
if status == 'succeeded' or status == 'dead' then
  return {'done', tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0'), status,
          redis.call('HGET', KEYS[1], 'error') or ''}
end
local retry_at = tonumber(redis.call('HGET', KEYS[1], 'retry_at_ms') or '0')
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_ms') or '0')
if retry_at > now_ms or (status == 'running' and lease > now_ms) then
  return {'waiting', 0, status, ''}
end
if not status then
  redis.call('HSET', KEYS[1], 'id', ARGV[1], 'enqueued_at', ARGV[2])
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'owner_id', ARGV[5]) end
  if ARGV[6] == '1' then redis.call('HSET', KEYS[1], 'system', '1') end
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2],
           'lease_ms', now_ms + tonumber(ARGV[7]))
redis.call('HDEL', KEYS[1], 'retry_at_ms')
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {'run', attempts, 'running', redis.call('HGET', KEYS[1], 'error') or ''}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class JobStore:
    """Reads and writes job records."""

    def __init__(self, redis: Redis, *, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._begin = redis.register_script(_BEGIN)

    @property
    def redis(self) -> Redis:
        """The client the records are kept with (for the worker's MULTI)."""
        return self._redis

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
            pipe.hset(self.key(job_id), mapping=_fields(job))
            pipe.expire(self.key(job_id), self._ttl_s)
            pipe.xadd(event.STREAM, encode(event))  # type: ignore[arg-type]
            await pipe.execute()
        return job

    async def get(self, job_id: str) -> Job | None:
        """A job's record, if it exists (and has not expired)."""
        raw: dict[Any, Any] = await self._redis.hgetall(self.key(job_id))
        if not raw or b"status" not in raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return Job.model_validate(
            {name: value for name, value in fields.items() if name in Job.model_fields}
        )

    async def begin(
        self, job_id: str, *, owner_id: int | None, system: bool, lease_s: float
    ) -> Begun:
        """Decide whether a delivery of the job runs; if it does, count the attempt and mark
        the record `running` under a lease of `lease_s` (extend it with `extend`)."""
        now = _now()
        reply = await self._begin(
            keys=[self.key(job_id)],
            args=[
                job_id,
                now.isoformat(),
                _ms(now),
                self._ttl_s,
                "" if owner_id is None else owner_id,
                "1" if system else "0",
                int(lease_s * 1000),
            ],
        )
        decision, attempts, status, error = reply
        return Begun(
            decision=_text(decision),  # type: ignore[arg-type]
            attempts=int(attempts),
            status=_text(status) if status else None,
            error=_text(error) or None,
        )

    def extend(self, pipe: Pipeline, job_id: str, *, lease_s: float) -> None:
        """Renew the lease of a running job (a heartbeat)."""
        pipe.hset(self.key(job_id), "lease_ms", _ms(_now()) + int(lease_s * 1000))

    def succeeded(self, pipe: Pipeline, job_id: str, result: str) -> None:
        """The job is done, with its result."""
        key = self.key(job_id)
        pipe.hset(key, mapping={"status": "succeeded", "result": result, "finished_at": _iso()})
        pipe.hdel(key, "error", "lease_ms", "retry_at_ms")
        pipe.expire(key, self._ttl_s)

    def failed(self, pipe: Pipeline, job_id: str, error: str, *, retry_in_s: float) -> None:
        """The attempt failed; the job may run again after `retry_in_s`."""
        key = self.key(job_id)
        retry_at = _ms(_now()) + int(retry_in_s * 1000)
        pipe.hset(key, mapping={"status": "failed", "error": error, "retry_at_ms": retry_at})
        pipe.hdel(key, "lease_ms")
        pipe.expire(key, self._ttl_s)

    def dead(self, pipe: Pipeline, job_id: str, error: str) -> None:
        """The worker gave up on the job."""
        key = self.key(job_id)
        pipe.hset(key, mapping={"status": "dead", "error": error, "finished_at": _iso()})
        pipe.hdel(key, "lease_ms", "retry_at_ms")
        pipe.expire(key, self._ttl_s)

    def handed_back(self, pipe: Pipeline, job_id: str) -> None:
        """The attempt was interrupted (shutdown) before it ended: queued again, uncounted."""
        key = self.key(job_id)
        pipe.hset(key, "status", "queued")
        pipe.hincrby(key, "attempts", -1)
        pipe.hdel(key, "lease_ms", "started_at")
        pipe.expire(key, self._ttl_s)

    def requeued(self, pipe: Pipeline, job_id: str) -> None:
        """A dead job replayed by an operator: queued again with a fresh count of attempts."""
        key = self.key(job_id)
        pipe.hset(key, mapping={"status": "queued", "attempts": 0})
        pipe.hdel(key, "lease_ms", "retry_at_ms", "started_at", "finished_at")
        pipe.expire(key, self._ttl_s)


def _fields(job: Job) -> dict[Any, Any]:
    """A record's hash fields (absent values are absent fields)."""
    return {
        name: ("1" if value else "0") if isinstance(value, bool) else _encode(value)
        for name, value in job.model_dump().items()
        if value is not None
    }


def _encode(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _iso() -> str:
    return _now().isoformat()


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
