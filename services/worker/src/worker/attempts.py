"""A job's record and its stream entry, moved together: one Lua script per step.

An attempt is fenced by its number (the record's `attempts` when it began): every later step
(heartbeat, outcome, hand-back) applies only while the record is still `running` that same
attempt, so a worker that stalled past its lease and was overtaken by another cannot overwrite
the newer attempt's record, acknowledge its entry or steal it back. Times that decide anything
(leases, back-off) come from Redis's clock (`TIME`), never from a worker's. The calls go through
a `ScriptPipeline`: the steps of many jobs share round trips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from meshplate_core.jobs import RECENT_KEY, JobStore, note_recent
from meshplate_core.streams import as_text
from worker.pipeline import Call, ScriptPipeline

_NOW_MS = "local t = redis.call('TIME') local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)\n"
# The entry must be pending for this consumer (a claim by another may have taken it since).
_OURS = "#redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 1"
_SAME_ATTEMPT = (
    "local fence = redis.call('HMGET', KEYS[1], 'status', 'attempts')\n"
    "local same = fence[1] == 'running' and tonumber(fence[2]) == tonumber(ARGV[4])\n"
)

# KEYS: record, stream, recent jobs. ARGV: group, consumer, entry id, job id, now (ISO), ttl (s),
# owner id or "", "1" for a system job, lease (ms).
_BEGIN = (
    _NOW_MS
    + """
if #redis.call('XPENDING', KEYS[2], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then
  return {'lost', 0, '', ''}
end
local r = redis.call('HMGET', KEYS[1], 'status', 'attempts', 'error', 'retry_at_ms', 'lease_ms',
                     'id')
local status = r[1] or ''
if status == 'succeeded' or status == 'dead' then
  -- Done before (a duplicate entry, or a crash after the outcome): only acknowledged again.
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[3])
  return {'done', tonumber(r[2]) or 0, status, r[3] or ''}
end
if (tonumber(r[4]) or 0) > now_ms or (status == 'running' and (tonumber(r[5]) or 0) > now_ms) then
  return {'waiting', 0, status, ''}
end
-- Other consumers' claims (and a retry's back-off) count idle time from now, not from when the
-- entry was read (it may have waited for a slot).
redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
if not r[6] then
  -- An event-driven job's first delivery makes its record.
  redis.call('HSET', KEYS[1], 'id', ARGV[4], 'enqueued_at', ARGV[5])
  if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'owner_id', ARGV[7]) end
  if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'system', '1') end
"""
    + note_recent(key=3, job_id=4, ttl=6)
    + """
end
local attempts = (tonumber(r[2]) or 0) + 1
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', attempts, 'started_at', ARGV[5],
           'lease_ms', now_ms + tonumber(ARGV[9]))
if r[4] then redis.call('HDEL', KEYS[1], 'retry_at_ms') end
redis.call('EXPIRE', KEYS[1], ARGV[6])
return {'run', attempts, 'running', r[3] or ''}
"""
)

# KEYS: record, stream. ARGV: group, consumer, entry id, attempt, lease (ms).
_HEARTBEAT = (
    _NOW_MS
    + _SAME_ATTEMPT
    + f"if not same or not ({_OURS}) then return 0 end\n"
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
    _SAME_ATTEMPT
    + "if not same then return 0 end\n"
    + """
local outcome = ARGV[5]
if outcome == 'succeeded' then
  redis.call('HSET', KEYS[1], 'status', 'succeeded', 'result', ARGV[8], 'finished_at', ARGV[6])
  redis.call('HDEL', KEYS[1], 'error', 'lease_ms', 'retry_at_ms')
  redis.call('XACK', KEYS[2], ARGV[1], ARGV[3])
elseif outcome == 'failed' then
  """
    + _NOW_MS
    + """
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

# KEYS: stream. ARGV: group, consumer, entry id, idle (ms). An entry read but never started:
# claimable by anyone at once, if it is still this consumer's.
_RELEASE = """
if #redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2]) == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
return 1
"""

# KEYS: stream, dead-letter stream. ARGV: group, entry id, then the dead-letter entry's fields
# (flat).
_BURY = """
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

Outcome = Literal["succeeded", "failed", "dead", "queued"]


@dataclass(frozen=True)
class Begun:
    """What `begin` decided for one delivery.

    `run`: go ahead, this is attempt `attempts`. `done`: finished before (`status` says how):
    acknowledged again, nothing to run. `waiting`: a retry whose back-off has not passed, or
    another delivery of the same job still running under its lease: leave the entry pending.
    `lost`: the entry is no longer this consumer's.
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


@dataclass(frozen=True)
class Start:
    """A delivery to begin: its entry and the job it carries."""

    entry: Entry
    job_id: str
    owner_id: int | None
    system: bool


class Attempts:
    """Runs the scripts for one worker process."""

    def __init__(self, jobs: JobStore, pipeline: ScriptPipeline, *, lease_s: float) -> None:
        self._ttl_s = jobs.ttl_s
        self._pipeline = pipeline
        self._lease_ms = int(lease_s * 1000)
        self._begin = pipeline.script(_BEGIN)
        self._heartbeat = pipeline.script(_HEARTBEAT)
        self._settle = pipeline.script(_SETTLE)
        self._release = pipeline.script(_RELEASE)
        self._bury = pipeline.script(_BURY)

    async def begin(self, starts: Sequence[Start]) -> list[Begun | Exception]:
        """For each delivery, whether it runs; if it does, it is counted and takes the lease.
        A delivery whose script failed by itself has the error instead."""
        now = _iso()
        replies = await self._pipeline.call_many(
            [
                Call(
                    self._begin,
                    [JobStore.key(start.job_id), start.entry.stream, RECENT_KEY],
                    [
                        start.entry.group,
                        start.entry.consumer,
                        start.entry.entry_id,
                        start.job_id,
                        now,
                        self._ttl_s,
                        "" if start.owner_id is None else start.owner_id,
                        "1" if start.system else "0",
                        self._lease_ms,
                    ],
                )
                for start in starts
            ]
        )
        return [reply if isinstance(reply, Exception) else _begun(reply) for reply in replies]

    async def heartbeat(self, running: Sequence[tuple[Entry, str, int]]) -> list[bool | Exception]:
        """For each running (entry, job id, attempt): renew the entry and the lease; False when
        the attempt has been overtaken."""
        replies = await self._pipeline.call_many(
            [
                Call(
                    self._heartbeat,
                    [JobStore.key(job_id), entry.stream],
                    [entry.group, entry.consumer, entry.entry_id, attempt, self._lease_ms],
                )
                for entry, job_id, attempt in running
            ]
        )
        return [reply if isinstance(reply, Exception) else bool(reply) for reply in replies]

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
        done = await self._pipeline.call(
            Call(
                self._settle,
                [JobStore.key(job_id), entry.stream, entry.dead_stream],
                [
                    entry.group,
                    entry.consumer,
                    entry.entry_id,
                    attempt,
                    outcome,
                    _iso(),
                    self._ttl_s,
                    text,
                    int(delay_s * 1000),
                    attempt if attempts is None else attempts,
                    *flat,
                ],
            )
        )
        return bool(done)

    async def release(self, entries: Sequence[Entry], *, idle_s: float) -> None:
        """Entries read but never started (at shutdown): claimable by another consumer at once."""
        await self._pipeline.call_many(
            [
                Call(
                    self._release,
                    [entry.stream],
                    [entry.group, entry.consumer, entry.entry_id, int(idle_s * 1000)],
                )
                for entry in entries
            ]
        )

    async def bury_unreadable(self, entry: Entry, fields: Mapping[Any, Any]) -> None:
        """A malformed entry (no job to record): to the dead-letter stream, acknowledged."""
        flat = [item for pair in fields.items() for item in pair]
        await self._pipeline.call(
            Call(
                self._bury,
                [entry.stream, entry.dead_stream],
                [entry.group, entry.entry_id, *flat],
            )
        )


def _begun(reply: Any) -> Begun:
    decision, attempts, status, error = reply
    return Begun(
        decision=as_text(decision),  # type: ignore[arg-type]  # one of the script's four words
        attempts=int(attempts),
        status=as_text(status) or None,
        error=as_text(error) or None,
    )


def _iso() -> str:
    return datetime.now(UTC).isoformat()
