"""The dead-letter streams (`worker.dead.<kind>`): what is in them, and replaying it.

Replaying an entry appends its original fields to the stream it came from, resets its job's
record to `queued` with no attempts, and deletes it from the dead-letter stream, in one MULTI:
the job runs again from scratch, once, wherever a worker picks it up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meshplate_core.jobs import JobStore
from worker.delivery import DEAD_PREFIX
from worker.kind import dead_stream


@dataclass(frozen=True)
class DeadEntry:
    """One dead job as its dead-letter entry tells it."""

    entry_id: str
    stream: str
    job_id: str
    attempts: int
    error: str
    at: str
    fields: dict[str, str]


async def list_dead(jobs: JobStore, kind: str, *, count: int = 100) -> list[DeadEntry]:
    """The oldest `count` dead entries of `kind`."""
    entries: Any = await jobs.redis.xrange(dead_stream(kind), count=count)
    return [_entry(entry_id, fields) for entry_id, fields in entries]


async def replay(jobs: JobStore, kind: str, entry_ids: Sequence[str] = ()) -> int:
    """Put the given dead entries of `kind` (all of them when none are given) back on their
    stream; returns how many were replayed (unknown ids are skipped)."""
    stream = dead_stream(kind)
    found: list[Any] = []
    if entry_ids:
        for entry_id in entry_ids:
            one: Any = await jobs.redis.xrange(stream, min=entry_id, max=entry_id)
            found.extend(one)
    else:
        every: Any = await jobs.redis.xrange(stream)
        found.extend(every)
    for entry_id, fields in found:
        dead = _entry(entry_id, fields)
        async with jobs.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(dead.stream, dead.fields)  # type: ignore[arg-type]
            if dead.job_id:
                jobs.requeued(pipe, dead.job_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()
    return len(found)


def _entry(entry_id: Any, raw: Any) -> DeadEntry:
    fields = {_text(key): _text(value) for key, value in raw.items()}
    meta = {k.removeprefix(DEAD_PREFIX): v for k, v in fields.items() if k.startswith(DEAD_PREFIX)}
    return DeadEntry(
        entry_id=_text(entry_id),
        stream=meta.get("stream", ""),
        job_id=meta.get("job_id", ""),
        attempts=int(meta.get("attempts", "0")),
        error=meta.get("error", ""),
        at=meta.get("at", ""),
        fields={k: v for k, v in fields.items() if not k.startswith(DEAD_PREFIX)},
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
