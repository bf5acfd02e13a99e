"""A job's record and its stream entry, moved together: one Lua script per step.

An attempt is fenced by its number (the record's `attempts` when it began): every later step
(heartbeat, outcome, hand-back) applies only while the record is still `running` that same
attempt, so a worker that stalled past its lease and was overtaken by another cannot overwrite
the newer attempt's record, acknowledge its entry or steal it back. Times that decide anything
(leases, back-off) come from Redis's clock (`TIME`), never from a worker's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from meshplate_core.jobs import JobStore
from meshplate_core.streams import as_text

_NOW_MS = "local t = redis.call('TIME') local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)\n"
# The entry must be pending for this consumer (a claim by another may have taken it since).
_OURS = "#redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 1"
_SAME_ATTEMPT = (
    "redis.call('HGET', KEYS[1], 'status') == 'running' and "
    "tonumber(redis.call('HGET', KEYS[1], 'attempts') or '-1') == tonumber(ARGV[4])"
)

# KEYS: record, stream. ARGV: group, consumer, entry id, job id, now (ISO), ttl (s), owner id
# or "", "1" for a system job, lease (ms).
_BEGIN = (
    _NOW_MS
    + f"if not ({_OURS}) then return {{'lost', 0, '', ''}} end\n"
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'dead' then
  return {'done', tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0'), status,
          redis.call('HGET', KEYS[1], 'error') or ''}
end
local retry_at = tonumber(redis.call('HGET', KEYS[1], 'retry_at_ms') or '0')
local lease = tonumber(redis.call('HGET', KEYS[1], 'lease_ms') or '0')
if retry_at > now_ms or (status == 'running' and lease > now_ms) then
  return {'waiting', 0, status or '', ''}
end
-- Other consumers' claims count idle time from now, not from when the entry was read.
redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
if redis.call('HEXISTS', KEYS[1], 'id') == 0 then
  redis.call('HSET', KEYS[1], 'id', ARGV[4], 'enqueued_at', ARGV[5])
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'owner_id', ARGV[7]) end
  if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'system', '1') end
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[5],
           'lease_ms', now_ms + tonumber(ARGV[9]))
redis.call('HDEL', KEYS[1], 'retry_at_ms')
redis.call('EXPIRE', KEYS[1], ARGV[6])
return {'run', attempts, 'running', redis.call('HGET', KEYS[1], 'error') or ''}
"""
)

# KEYS: record, stream. ARGV: group, consumer, entry id, attempt, lease (ms).
_HEARTBEAT = (
    _NOW_MS
    + f"if not ({_OURS}) or not ({_SAME_ATTEMPT}) then return 0 end\n"
    + """
redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
redis.call('HSET', KEYS[1], 'lease_ms', now_ms + tonumber(ARGV[5]))
return 1
"""
)

# KEYS: record, stream, dead-letter stream. ARGV: group, consumer, entry id, attempt, outcome,
# now (ISO), ttl (s), result or error, delay (ms: the back-off, or the idle time a hand-back sets),
# attempts to record, then the dead-letter entry's fields (flat).
_SETTLE = (
    _NOW_MS
    + f"if not ({_SAME_ATTEMPT}) then return 0 end\n"
    + """
local outcome = ARGV[5]
if outcome == 'succeeded' then
  redis.call('HSET', KEYS[1], 'status', 'succeeded', 'result', ARGV[8], 'finished_at', ARGV[6])
  redis.call('HDEL', KEYS[1], 'error', 'lease_ms', 'retry_at_ms')
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[3])
elseif outcome == 'failed' then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', ARGV[8],
             'retry_at_ms', now_ms + tonumber(ARGV[9]))
  redis.call('HDEL', KEYS[1], 'lease_ms')
elseif outcome == 'dead' then
  redis.call('HSET', KEYS[1], 'status', 'dead', 'error', ARGV[8], 'finished_at', ARGV[6],
             'attempts', ARGV[10])
  redis.call('HDEL', KEYS[1], 'lease_ms', 'retry_at_ms')
  redis.call('XADD', KEYS[3], '*', unpack(ARGV, 11))
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[3])
else
  -- Handed back: queued again, this attempt uncounted, claimable by anyone at once.
  redis.call('HSET', KEYS[1], 'status', 'queued', 'attempts', ARGV[10])
  redis.call('HDEL', KEYS[1], 'lease_ms', 'started_at')
  redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[9], 'JUSTID')
end
redis.call('EXPIRE', KEYS[1], ARGV[7])
return 1
"""
)

Outcome = Literal["succeeded", "failed", "dead", "queued"]


@dataclass(frozen=True)
class Begun:
    """What `begin` decided for one delivery.

    `run`: go ahead, this is attempt `attempts`. `done`: finished before (`status` says how):
    acknowledge and skip. `waiting`: a retry whose back-off has not passed, or another delivery
    of the same job still running under its lease: leave the entry pending. `lost`: the entry
    is no longer this consumer's.
    """

    decision: Literal["run", "done", "waiting", "lost"]
    attempts: int
    status: str | None
    error: str | None


@dataclass(frozen=True)
class Entry:
    """Where a delivery came from: a stream entry, pending for `consumer` in `group`."""

    stream: str
    group: str
    consumer: str
    entry_id: str
    dead_stream: str


class Attempts:
    """Runs the scripts for one worker process."""

    def __init__(self, jobs: JobStore, *, lease_s: float) -> None:
        self._jobs = jobs
        self._lease_ms = int(lease_s * 1000)
        redis = jobs.redis
        self._begin = redis.register_script(_BEGIN)
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._settle = redis.register_script(_SETTLE)

    async def begin(
        self, entry: Entry, job_id: str, *, owner_id: int | None, system: bool
    ) -> Begun:
        """Decide whether this delivery runs; if it does, count it and take the lease."""
        reply = await self._begin(
            keys=[JobStore.key(job_id), entry.stream],
            args=[
                entry.group,
                entry.consumer,
                entry.entry_id,
                job_id,
                _iso(),
                self._jobs.ttl_s,
                "" if owner_id is None else owner_id,
                "1" if system else "0",
                self._lease_ms,
            ],
        )
        decision, attempts, status, error = reply
        return Begun(
            decision=as_text(decision),  # type: ignore[arg-type]
            attempts=int(attempts),
            status=as_text(status) or None,
            error=as_text(error) or None,
        )

    async def heartbeat(self, entry: Entry, job_id: str, attempt: int) -> bool:
        """Renew the entry and the lease; False when the attempt has been overtaken."""
        alive = await self._heartbeat(
            keys=[JobStore.key(job_id), entry.stream],
            args=[entry.group, entry.consumer, entry.entry_id, attempt, self._lease_ms],
        )
        return bool(alive)

    async def settle(
        self,
        entry: Entry,
        job_id: str,
        attempt: int,
        outcome: Outcome,
        *,
        text: str = "",
        delay_s: float = 0.0,
        attempts: int | None = None,
        dead_fields: Mapping[str, Any] | None = None,
    ) -> bool:
        """Write the attempt's outcome with what it does to the entry; False (nothing written)
        when the attempt has been overtaken."""
        flat = [item for pair in (dead_fields or {}).items() for item in pair]
        done = await self._settle(
            keys=[JobStore.key(job_id), entry.stream, entry.dead_stream],
            args=[
                entry.group,
                entry.consumer,
                entry.entry_id,
                attempt,
                outcome,
                _iso(),
                self._jobs.ttl_s,
                text,
                int(delay_s * 1000),
                attempt if attempts is None else attempts,
                *flat,
            ],
        )
        return bool(done)

    async def bury_unreadable(self, entry: Entry, fields: Mapping[Any, Any]) -> None:
        """A malformed entry (no job to record): to the dead-letter stream, acknowledged."""
        async with self._jobs.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(entry.dead_stream, dict(fields))
            pipe.xack(entry.stream, entry.group, entry.entry_id)
            await pipe.execute()


def _iso() -> str:
    return datetime.now(UTC).isoformat()
