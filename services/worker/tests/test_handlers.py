from __future__ import annotations

import redis.asyncio as redis
from faststream.redis import TestRedisBroker

from meshplate_core.events import SampleTaskRequested
from meshplate_core.jobs import JobStore
from worker.app import build_broker
from worker.handlers import GROUP, run_sample_task, sample_result
from worker.settings import Settings


async def test_sample_task_runs_from_the_real_stream_and_is_acked(flushed_redis: str) -> None:
    broker = build_broker(Settings(redis_url=flushed_redis, _env_file=None))
    jobs: JobStore = broker.context.get("jobs")
    task = SampleTaskRequested(task_id="t1", message="hello")

    async with TestRedisBroker(broker, with_real=True):
        await jobs.enqueue("t1", task, owner_id=None)
        await run_sample_task.wait_call(timeout=5)
        assert run_sample_task.mock is not None
        run_sample_task.mock.assert_called_once_with(task.model_dump(mode="json"))
    job = await jobs.get("t1")
    await jobs.close()

    assert job is not None
    assert (job.status, job.result, job.attempts) == ("succeeded", "Task hello is complete!", 1)
    assert job.started_at is not None
    assert job.finished_at is not None

    async with redis.Redis.from_url(flushed_redis) as client:
        groups = await client.xinfo_groups(SampleTaskRequested.STREAM)
    assert [(g["name"], g["pending"]) for g in groups] == [(GROUP.encode(), 0)]


def test_sample_task_result_is_the_boilerplates() -> None:
    assert sample_result("m") == "Task m is complete!"
