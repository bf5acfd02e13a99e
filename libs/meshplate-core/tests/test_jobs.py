"""Job records on real Redis: a queued job and its event are written together, by one script
that Redis may have forgotten."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis

from meshplate_core.events import SampleTaskRequested
from meshplate_core.jobs import JobStore
from meshplate_core.streams import decode


@pytest.fixture
async def jobs(flushed_redis: str) -> AsyncIterator[JobStore]:
    store = JobStore(redis.Redis.from_url(flushed_redis), ttl_s=60)
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
