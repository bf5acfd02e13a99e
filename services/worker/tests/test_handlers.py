from __future__ import annotations

import redis.asyncio as redis
from faststream.redis import TestRedisBroker

from meshplate_core.events import SampleTaskRequested
from worker.app import build_broker
from worker.handlers import GROUP, run_sample_task
from worker.settings import Settings


async def test_sample_task_runs_from_the_real_stream_and_is_acked(flushed_redis: str) -> None:
    broker = build_broker(Settings(redis_url=flushed_redis, _env_file=None))
    task = SampleTaskRequested(task_id="t1", message="hello")

    async with TestRedisBroker(broker, with_real=True) as br:
        await br.publish(task, stream=SampleTaskRequested.STREAM)
        await run_sample_task.wait_call(timeout=5)
        assert run_sample_task.mock is not None
        run_sample_task.mock.assert_called_once_with(task.model_dump(mode="json"))

    async with redis.Redis.from_url(flushed_redis) as client:
        groups = await client.xinfo_groups(SampleTaskRequested.STREAM)
    assert [(g["name"], g["pending"]) for g in groups] == [(GROUP.encode(), 0)]


async def test_sample_task_result_is_the_boilerplates() -> None:
    assert await run_sample_task(SampleTaskRequested(task_id="t", message="m")) == (
        "Task m is complete!"
    )
