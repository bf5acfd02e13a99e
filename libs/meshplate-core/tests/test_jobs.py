"""Job records on real Redis: a queued job and its event are written together, by one script
that Redis may have forgotten."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshplate_core.events import SampleTaskRequested
from meshplate_core.jobs import RECENT_KEPT, RECENT_KEY, JobStore
from meshplate_core.redis_client import connect
from meshplate_core.streams import decode


@pytest.fixture
async def jobs(flushed_redis: str) -> AsyncIterator[JobStore]:
    store = JobStore(connect(flushed_redis), ttl_s=60)
    yield store
    await store.close()


def task(job_id: str, owner_id: int | None = None) -> SampleTaskRequested:
    return SampleTaskRequested(task_id=job_id, message="hello", owner_id=owner_id)


async def test_an_enqueued_job_is_queued_with_its_event_on_the_stream(jobs: JobStore) -> None:
    event = task("j1", owner_id=7)
    await jobs.enqueue("j1", event, owner_id=7)

    job = await jobs.get("j1")
    entries: Any = await jobs.redis.xrange(SampleTaskRequested.STREAM)
    ttl = await jobs.redis.ttl(JobStore.key("j1"))

    assert job is not None
    assert (job.status, job.attempts, job.owner_id, job.system) == ("queued", 0, 7, False)
    [(_id, fields)] = entries
    assert decode(SampleTaskRequested, fields) == event
    assert 0 < ttl <= 60


async def test_enqueueing_again_replaces_the_old_record(jobs: JobStore) -> None:
    await jobs.enqueue("j1", task("j1"), owner_id=None)
    await jobs.redis.hset(JobStore.key("j1"), mapping={"status": "dead", "error": "boom"})

    await jobs.enqueue("j1", task("j1"), owner_id=None)
    job = await jobs.get("j1")

    assert job is not None
    assert (job.status, job.error) == ("queued", None)
    assert await jobs.redis.xlen(SampleTaskRequested.STREAM) == 2


async def test_enqueue_once_leaves_an_existing_record_alone(jobs: JobStore) -> None:
    first = await jobs.enqueue_once("slot-1", task("slot-1"), system=True)
    second = await jobs.enqueue_once("slot-1", task("slot-1"), system=True)
    job = await jobs.get("slot-1")

    assert (first, second) == (True, False)
    assert job is not None
    assert job.system is True
    assert await jobs.redis.xlen(SampleTaskRequested.STREAM) == 1


async def test_enqueueing_works_after_redis_forgot_its_scripts(jobs: JobStore) -> None:
    await jobs.enqueue("j1", task("j1"), owner_id=None)
    await jobs.redis.script_flush()

    await jobs.enqueue("j2", task("j2"), owner_id=None)
    job = await jobs.get("j2")

    assert job is not None
    assert job.status == "queued"
    assert await jobs.redis.xlen(SampleTaskRequested.STREAM) == 2


async def test_recent_jobs_are_listed_newest_first_without_expired_records(
    jobs: JobStore,
) -> None:
    for n in range(5):
        await jobs.enqueue(f"j{n}", task(f"j{n}"), owner_id=None)
        await asyncio.sleep(0.002)
    await jobs.redis.delete(JobStore.key("j3"))  # expired meanwhile

    first, total = await jobs.recent(0, 2)
    rest, _total = await jobs.recent(2, 10)

    assert [job.id for job in first] == ["j4"]
    assert [job.id for job in rest] == ["j2", "j1", "j0"]
    assert total == 5


async def test_the_recent_jobs_keep_only_the_newest_that_still_live(jobs: JobStore) -> None:
    now_ms = int(time.time() * 1000)
    # Older than a record lives (60 s here), then a full index of live ones.
    await jobs.redis.zadd(RECENT_KEY, {"expired": now_ms - 61_000})
    await jobs.redis.zadd(RECENT_KEY, {f"old{n}": now_ms - 30_000 + n for n in range(RECENT_KEPT)})

    await jobs.enqueue("new", task("new"), owner_id=None)

    assert await jobs.redis.zcard(RECENT_KEY) == RECENT_KEPT
    assert await jobs.redis.zscore(RECENT_KEY, "expired") is None
    assert await jobs.redis.zscore(RECENT_KEY, "old0") is None
    assert (await jobs.recent(0, 1))[0][0].id == "new"


async def test_workers_say_which_kinds_they_run(jobs: JobStore) -> None:
    await jobs.register_kinds(["welcome-email", "sample-task"])
    await jobs.register_kinds(["sample-task"])

    assert await jobs.kinds() == ["sample-task", "welcome-email"]
