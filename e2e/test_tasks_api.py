"""Tasks over real HTTP, run by a real worker process (API.md "Tasks")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port

from .conftest import Stack, serve_gateway
from .identity import ann_bob_and_root


@pytest.fixture
async def worker(flushed_redis: str) -> AsyncIterator[ServiceProcess]:
    """A worker process on the stack's Redis."""
    process = ServiceProcess(
        "worker", env={"WORKER_REDIS_URL": flushed_redis, "WORKER_HTTP_PORT": str(free_port())}
    )
    await process.start()
    await process.wait_for_log(lambda line: "Uvicorn running" in line["msg"], timeout_s=20)
    yield process
    await process.terminate(timeout_s=15)


async def _finished(client: httpx.AsyncClient, task_id: str, **kwargs: Any) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            body: dict[str, Any] = (
                await client.get(f"/api/v1/tasks/task/{task_id}", **kwargs)
            ).json()
            if body["status"] in ("succeeded", "dead"):
                return body
            await asyncio.sleep(0.05)


async def test_a_task_runs_and_its_status_shows_the_result(
    stack: Stack, worker: ServiceProcess
) -> None:
    async with stack.client() as client:
        created = await client.post("/api/v1/tasks/task", params={"message": "hello"})
        first = (await client.get(f"/api/v1/tasks/task/{created.json()['id']}")).json()
        done = await _finished(client, created.json()["id"])

    assert created.status_code == 201
    assert first["status"] in ("queued", "running", "succeeded")
    assert (done["status"], done["result"], done["attempts"]) == (
        "succeeded",
        "Task hello is complete!",
        1,
    )
    assert done["enqueued_at"] <= done["started_at"] <= done["finished_at"]


async def test_a_users_task_is_theirs_and_a_superusers_to_see(
    stack: Stack, worker: ServiceProcess
) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        created = await client.post(
            "/api/v1/tasks/task", params={"message": "mine"}, headers=who["ann"]
        )
        task = f"/api/v1/tasks/task/{created.json()['id']}"
        await _finished(client, created.json()["id"], headers=who["ann"])
        seen = {name: (await client.get(task, headers=who[name])).status_code for name in who}
        anonymous = (await client.get(task)).status_code

    assert seen == {"ann": 200, "bob": 404, "root": 200}
    assert anonymous == 404


async def test_unknown_tasks_are_404(stack: Stack) -> None:
    async with stack.client() as client:
        response = await client.get("/api/v1/tasks/task/nope")

    assert (response.status_code, response.json()) == (404, {"detail": "Task not found"})


async def test_no_queue_is_503(stack: Stack) -> None:
    settings = stack.gateway_settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "startup_wait_s": 0}
    )
    async with serve_gateway(settings) as url, stack.client(url) as client:
        response = await client.post("/api/v1/tasks/task", params={"message": "x"})

    assert (response.status_code, response.json()) == (503, {"detail": "Queue is not available"})


async def test_a_message_is_required(stack: Stack) -> None:
    async with stack.client() as client:
        missing = await client.post("/api/v1/tasks/task")
        too_long = await client.post("/api/v1/tasks/task", params={"message": "x" * 1001})

    assert (missing.status_code, too_long.status_code) == (422, 422)
