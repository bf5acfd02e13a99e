"""The jobs scenario: sample jobs enqueued over HTTP by wrk (their ids written by its threads),
then followed in their records (meshplate_core.jobs) until every one has finished: how long from
the first enqueue to the last success, and whether any was lost on the way."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis.asyncio

from bench import lua
from bench.wrk import THREADS, run_wrk
from e2e.measure import p50, p90, p99
from meshplate_core.events import SampleTaskRequested
from meshplate_core.jobs import JobStore

FINISHED = {"succeeded", "dead"}
CHUNK = 1000
# The enqueueing stops once no answer came for this long (a request lost on the way).
STALL_S = 5.0


@dataclass(frozen=True)
class Jobs:
    """What became of the jobs: `seconds` from the first enqueue to the last success, each job's
    time from enqueued to finished, and the rest by what happened (a refused enqueue's status,
    `lost` for a job without a record, else its last status)."""

    seconds: float
    latencies_s: list[float]
    failures: dict[str, int]

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    @property
    def answered(self) -> int:
        return self.ok + sum(self.failures.values())

    @property
    def p50_s(self) -> float:
        return p50(self.latencies_s) if self.ok > 1 else 0.0

    @property
    def p90_s(self) -> float:
        return p90(self.latencies_s) if self.ok > 1 else 0.0

    @property
    def p99_s(self) -> float:
        return p99(self.latencies_s) if self.ok > 1 else 0.0


def _ids(folder: Path) -> tuple[list[str], int]:
    """The ids the threads wrote so far, and how many threads are done."""
    ids, done = [], 0
    for file in folder.glob("ids-*.txt"):
        lines = file.read_text().split()
        done += lines[-1:] == ["done"]
        ids += [line for line in lines if line != "done"]
    return ids, done


class _Enqueued:
    """Whether wrk may stop: every thread is done, or the answers stopped coming."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._count = 0
        self._since = time.monotonic()

    def __call__(self) -> bool:
        ids, done = _ids(self._folder)
        if len(ids) != self._count:
            self._count, self._since = len(ids), time.monotonic()
        return done == THREADS or time.monotonic() - self._since > STALL_S


async def _drained(client: redis.asyncio.Redis, *, deadline: float) -> None:
    """Until every consumer group of the sample task's stream has read and acknowledged all
    (or the deadline: the records tell what happened)."""
    while time.monotonic() < deadline:
        groups: list[dict[str, Any]] = await client.xinfo_groups(SampleTaskRequested.STREAM)
        if groups and all(g.get("lag") == 0 and g.get("pending") == 0 for g in groups):
            return
        await asyncio.sleep(0.2)


async def _records(client: redis.asyncio.Redis, ids: list[str]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for start in range(0, len(ids), CHUNK):
        async with client.pipeline(transaction=False) as pipe:
            for job_id in ids[start : start + CHUNK]:
                pipe.hmget(JobStore.key(job_id), ["status", "enqueued_at", "finished_at"])
            for job_id, fields in zip(
                ids[start : start + CHUNK], await pipe.execute(), strict=True
            ):
                found[job_id] = fields
    return found


async def run_jobs(
    gateway_url: str, redis_url: str, *, count: int, connections: int, timeout_s: float = 180
) -> Jobs:
    """Enqueue `count` sample jobs with `connections` and wait until all have finished."""
    folder = Path(tempfile.mkdtemp(prefix="meshplate-jobs-"))
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        enqueued = await run_wrk(
            gateway_url,
            lua.sample_jobs(count // THREADS, folder),
            connections=connections,
            duration_s=timeout_s,
            stop_when=_Enqueued(folder),
        )
        ids = _ids(folder)[0]
        deadline = time.monotonic() + timeout_s
        if ids:
            await _drained(client, deadline=deadline)
        records = await _records(client, ids)
        # Records change in the same script as the acknowledgement; a retried job may still
        # be waiting for its next delivery.
        while time.monotonic() < deadline and (
            pending := [i for i, (status, *_) in records.items() if status not in FINISHED]
        ):
            if all(records[i][0] is None for i in pending):
                break
            await asyncio.sleep(0.5)
            records |= await _records(client, pending)
    finally:
        await client.aclose()
        shutil.rmtree(folder, ignore_errors=True)
    done = [
        (datetime.fromisoformat(enqueued_at), datetime.fromisoformat(finished_at))
        for status, enqueued_at, finished_at in records.values()
        if status == "succeeded"
    ]
    failures = dict(enqueued.failures)
    for status, *_ in records.values():
        if status != "succeeded":
            failures[status or "lost"] = failures.get(status or "lost", 0) + 1
    return Jobs(
        seconds=(max(f for _, f in done) - min(e for e, _ in done)).total_seconds() if done else 0,
        latencies_s=[(finished - enqueued).total_seconds() for enqueued, finished in done],
        failures=failures,
    )
