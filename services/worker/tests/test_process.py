from __future__ import annotations

import asyncio

import httpx
import redis.asyncio as redis

from meshplate_core.events import SampleTaskRequested
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port
from worker.handlers import GROUP


async def _health(port: int) -> httpx.Response:
    async with httpx.AsyncClient(timeout=2) as client:
        return await client.get(f"http://127.0.0.1:{port}/health")


async def test_worker_joins_its_group_serves_health_and_stops_on_sigterm(
    flushed_redis: str,
) -> None:
    port = free_port()
    process = ServiceProcess(
        "worker", env={"WORKER_REDIS_URL": flushed_redis, "WORKER_HTTP_PORT": str(port)}
    )
    await process.start()
    try:
        await process.wait_for_log(lambda line: "Uvicorn running" in line["msg"], timeout_s=20)
        response = await _health(port)
        async with redis.Redis.from_url(flushed_redis) as client:
            async with asyncio.timeout(5):
                while not await client.exists(SampleTaskRequested.STREAM):
                    await asyncio.sleep(0.05)
            groups = await client.xinfo_groups(SampleTaskRequested.STREAM)
    finally:
        code = await process.terminate(timeout_s=15)

    assert (response.status_code, response.json()["status"]) == (200, "healthy")
    assert [g["name"] for g in groups] == [GROUP.encode()]
    assert code == 0, process.output()
