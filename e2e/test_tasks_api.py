"""Tasks over real HTTP, run by a real worker process (docs/api.md "Tasks")."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import httpx
import pytest
import redis.asyncio as redis
from sqlalchemy import text

from meshplate_core.jobs import JobStore
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port
from meshplate_testing.smtp import Mailbox

from .conftest import Stack, StartWorker, serve_gateway
from .identity import ann_bob_and_root, sign_up


@pytest.fixture
async def worker(start_worker: StartWorker) -> ServiceProcess:
    """One worker process with the default schedules off."""
    return await start_worker()


async def _statuses(
    client: httpx.AsyncClient, task_id: str, **kwargs: Any
) -> tuple[list[str], dict[str, Any]]:
    """Every status seen while polling, and the final record."""
    seen: list[str] = []
    async with asyncio.timeout(15):
        while True:
            response = await client.get(f"/api/v1/tasks/task/{task_id}", **kwargs)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if not seen or seen[-1] != body["status"]:
                seen.append(body["status"])
            if body["status"] in ("succeeded", "dead"):
                return seen, body
            await asyncio.sleep(0.02)


async def _finished(client: httpx.AsyncClient, task_id: str, **kwargs: Any) -> dict[str, Any]:
    return (await _statuses(client, task_id, **kwargs))[1]


async def test_a_task_is_queued_until_a_worker_takes_it(
    stack: Stack, start_worker: StartWorker
) -> None:
    async with stack.client() as client:
        created = await client.post("/api/v1/tasks/task", params={"message": "hello"})
        task_id = created.json()["id"]
        queued = (await client.get(f"/api/v1/tasks/task/{task_id}")).json()
        # Watched from before the worker starts: it may take the task before it says it is up.
        watching = asyncio.create_task(_statuses(client, task_id))
        await start_worker(sample_task_s="1")
        seen, done = await watching

    assert created.status_code == 201
    assert (queued["status"], queued["attempts"], queued["started_at"]) == ("queued", 0, None)
    assert seen == ["queued", "running", "succeeded"]
    assert (done["result"], done["error"], done["attempts"]) == ("Task hello is complete!", None, 1)
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


async def test_sign_up_sends_exactly_one_welcome_email(
    stack: Stack, worker: ServiceProcess, mailbox: Mailbox
) -> None:
    async with stack.client() as client:
        ann = await sign_up(client, "ann", "ann@example.com")
        async with asyncio.timeout(15):
            while not _to(mailbox, "ann@example.com"):
                await asyncio.sleep(0.02)
        await asyncio.sleep(1)  # time enough for a duplicate to arrive

    [message] = _to(mailbox, "ann@example.com")
    assert message["To"] == f"{ann['name']} <ann@example.com>"
    assert message["Subject"] == "Welcome to Meshplate"


async def test_the_scheduled_cleanup_purges_expired_tokens_through_auth(
    stack: Stack, start_worker: StartWorker
) -> None:
    expired = datetime.now(UTC) - timedelta(days=1)
    async with stack.engines["auth"].begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO revocation (jti, user_id, revoked_at, expires_at) "
                "VALUES ('old', 1, :at, :at)"
            ),
            {"at": expired},
        )
    await start_worker(purge_interval_s="1")
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        job_id = await _system_job("purge-expired", stack)
        done = await _finished(client, job_id, headers=who["root"])
        hidden = {
            name: (await client.get(f"/api/v1/tasks/task/{job_id}", headers=who[name])).status_code
            for name in ("ann", "bob")
        }
    async with stack.engines["auth"].connect() as conn:
        left = (await conn.execute(text("SELECT count(*) FROM revocation"))).scalar_one()

    assert done["status"] == "succeeded"
    assert done["result"].startswith("removed 1 revocations")
    assert left == 0
    assert hidden == {"ann": 404, "bob": 404}


async def test_a_scheduled_job_waits_out_an_auth_outage(
    stack: Stack, start_worker: StartWorker
) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        await stack.stop("auth")
        await start_worker(
            purge_interval_s="3600",
            retry_backoff_s="0.3",
            claim_idle_s="0.5",
            claim_interval_s="0.1",
        )
        # auth cannot be reached: its slot waits instead of failing.
        await asyncio.sleep(1.5)
        async with redis.Redis.from_url(stack.gateway_settings.redis_url) as store:
            while_down = [key async for key in store.scan_iter(JobStore.key("purge-expired-*"))]
        await stack.start("auth")
        job_id = await _system_job("purge-expired", stack)
        done = await _finished(client, job_id, headers=who["root"])

    assert while_down == []
    assert (done["status"], done["attempts"], done["error"]) == ("succeeded", 1, None)


async def _job(client: httpx.AsyncClient, job_id: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get(f"/api/v1/tasks/task/{job_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_users_by_tier_report_reads_the_users_service(
    stack: Stack, start_worker: StartWorker
) -> None:
    async with stack.client() as client:
        who = await ann_bob_and_root(client)
        tier = await client.post("/api/v1/tier", json={"name": "pro"}, headers=who["root"])
        assert tier.status_code == 201, tier.text
        moved = await client.patch(
            "/api/v1/user/ann/tier", json={"tier_id": tier.json()["id"]}, headers=who["root"]
        )
        assert moved.status_code == 200, moved.text
        await start_worker(report_interval_s="1")
        job_id = await _system_job("users-by-tier-report", stack)
        done = await _finished(client, job_id, headers=who["root"])

    assert done["status"] == "succeeded"
    report = json.loads(done["result"])
    assert report["users"] == 3
    assert report["by_tier"]["pro"] == 1
    assert sum(report["by_tier"].values()) == 3


def _to(mailbox: Mailbox, address: str) -> list[Message]:
    return [message for message in mailbox.messages if address in message["To"]]


async def _system_job(name: str, stack: Stack) -> str:
    """The id of the first scheduled `name` job (its earliest slot: with a short interval, later
    ones may be queued by the time the keys are read, and SCAN returns them in any order)."""
    async with redis.Redis.from_url(stack.gateway_settings.redis_url) as client:
        async with asyncio.timeout(15):
            while True:
                ids: list[str] = [
                    key.decode().removeprefix(JobStore.key(""))
                    async for key in client.scan_iter(JobStore.key(f"{name}-*"))
                ]
                if ids:
                    return min(ids, key=lambda job_id: int(job_id.rsplit("-", 1)[1]))
                await asyncio.sleep(0.05)


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
