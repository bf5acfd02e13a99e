"""The dead-letter streams (`{jobs}:worker.dead.<kind>`): what is in them, and replaying it; the
worker writes them, and its command line and the admin panel read and replay them.

Replaying an entry (one script) deletes it from the dead-letter stream, appends its original
fields to the stream it came from, and writes its job's record afresh as `queued` with no
attempts: the job runs again from scratch, once, wherever a worker picks it up. An entry two
operators replay at the same time is replayed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meshplate_core.events import JOBS_TAG
from meshplate_core.jobs import RECENT_KEY, JobStore, note_recent
from meshplate_core.streams import as_text

# The fields a dead-letter entry adds to the original entry's: `dead.stream`, `dead.group`,
# `dead.entry_id`, `dead.job_id`, `dead.owner_id`, `dead.system`, `dead.attempts`, `dead.error`,
# `dead.at`.
DEAD_PREFIX = "dead."


def dead_stream(kind: str) -> str:
    """The dead-letter stream of a job kind."""
    return f"{JOBS_TAG}:worker.dead.{kind}"


# KEYS: dead-letter stream, source stream, record, recent jobs. ARGV: dead entry id, job id,
# now (ISO), ttl (s), owner id or "", "1" for a system job, then the original fields (flat). A
# replayed job is among the newest again.
_REPLAY = (
    """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 7))
if ARGV[2] ~= '' then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], 'id', ARGV[2], 'status', 'queued', 'attempts', 0,
             'enqueued_at', ARGV[3], 'system', ARGV[6])
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[3], 'owner_id', ARGV[5]) end
  redis.call('EXPIRE', KEYS[3], ARGV[4])
"""
    + note_recent(key=4, job_id=2, ttl=4)
    + """
end
return 1
"""
)


@dataclass(frozen=True)
class DeadEntry:
    """One dead job as its dead-letter entry tells it."""

    entry_id: str
    stream: str
    job_id: str
    owner_id: str
    system: str
    attempts: int
    error: str
    at: str
    fields: dict[str, str]


async def list_dead(jobs: JobStore, kind: str, *, count: int) -> list[DeadEntry]:
    """The oldest `count` dead entries of `kind`."""
    entries: Any = await jobs.redis.xrange(dead_stream(kind), count=count)
    return [_entry(entry_id, fields) for entry_id, fields in entries]


async def find_dead(jobs: JobStore, kind: str, entry_id: str) -> DeadEntry | None:
    """One dead entry of `kind`, if it is there."""
    entries: Any = await jobs.redis.xrange(dead_stream(kind), min=entry_id, max=entry_id)
    return _entry(*entries[0]) if entries else None


async def count_dead(jobs: JobStore, kind: str) -> int:
    """How many dead entries `kind` has."""
    return int(await jobs.redis.xlen(dead_stream(kind)))


async def replay(jobs: JobStore, kind: str, entry_ids: Sequence[str] = ()) -> int:
    """Put the given dead entries of `kind` (all of them when none are given) back on their
    stream; returns how many were replayed (unknown or already replayed ids are skipped)."""
    stream = dead_stream(kind)
    script = jobs.redis.register_script(_REPLAY)
    found: list[Any] = []
    if entry_ids:
        for entry_id in entry_ids:
            one: Any = await jobs.redis.xrange(stream, min=entry_id, max=entry_id)
            found.extend(one)
    else:
        every: Any = await jobs.redis.xrange(stream)
        found.extend(every)
    replayed = 0
    for entry_id, fields in found:
        dead = _entry(entry_id, fields)
        original = [item for pair in dead.fields.items() for item in pair]
        replayed += await script(
            keys=[stream, dead.stream, JobStore.key(dead.job_id), RECENT_KEY],
            args=[
                dead.entry_id,
                dead.job_id,
                datetime.now(UTC).isoformat(),
                jobs.ttl_s,
                dead.owner_id,
                dead.system,
                *original,
            ],
        )
    return replayed


def _entry(entry_id: Any, raw: Any) -> DeadEntry:
    fields = {as_text(key): as_text(value) for key, value in raw.items()}
    meta = {k.removeprefix(DEAD_PREFIX): v for k, v in fields.items() if k.startswith(DEAD_PREFIX)}
    return DeadEntry(
        entry_id=as_text(entry_id),
        stream=meta.get("stream", ""),
        job_id=meta.get("job_id", ""),
        owner_id=meta.get("owner_id", ""),
        system=meta.get("system", "0"),
        attempts=int(meta.get("attempts", "0")),
        error=meta.get("error", ""),
        at=meta.get("at", ""),
        fields={k: v for k, v in fields.items() if not k.startswith(DEAD_PREFIX)},
    )
