"""Real worker processes: health, SIGTERM, a SIGKILL mid-job, 1,000 jobs through a crash."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import redis.asyncio as redis

from meshplate_core.dead_letters import dead_stream
from meshplate_core.events import SampleTaskRequested
from meshplate_core.jobs import Job, JobStore
from meshplate_core.redis_client import connect
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.proxy import TcpProxy
from meshplate_testing.servers import ThrowawayRedis, free_port, running_redis

Start = Callable[..., Awaitable[ServiceProcess]]


def worker_starter(stack: AsyncExitStack, redis_url: str) -> Start:
    """Starts worker processes on `redis_url`, each stopped when `stack` closes."""

    async def start(**env: str) -> ServiceProcess:
        port = free_port()
        process = ServiceProcess(
            "worker",
            env={
                "WORKER_REDIS_URL": redis_url,
                "WORKER_HTTP_PORT": str(port),
                "WORKER_CLAIM_IDLE_S": "1",
                "WORKER_CLAIM_INTERVAL_S": "0.1",
                "WORKER_SAMPLE_TASK_S": "0",
                "WORKER_PURGE_INTERVAL_S": "0",
                "WORKER_REPORT_INTERVAL_S": "0",
                # No gRPC service is called here.
                "GRPC_PLAINTEXT": "true",
                **{f"WORKER_{name.upper()}": value for name, value in env.items()},
            },
        )
        # Where its /health answers, noted on the process for the test (not one of its fields).
        process.http_port = port  # type: ignore[attr-defined]
        await process.start()
        stack.push_async_callback(process.terminate, timeout_s=20)
        await process.wait_for_log(lambda line: "Uvicorn running" in line["msg"], timeout_s=20)
        return process

    return start


@pytest.fixture
async def start_worker(flushed_redis: str) -> AsyncIterator[Start]:
    """Starts worker processes on the test Redis (stopped at the end of the test)."""
    async with AsyncExitStack() as stack:
        yield worker_starter(stack, flushed_redis)


@pytest.fixture
async def jobs(flushed_redis: str) -> AsyncIterator[JobStore]:
    store = JobStore(connect(flushed_redis), ttl_s=3600)
    yield store
    await store.close()


async def enqueue(jobs: JobStore, message: str = "m") -> str:
    job_id = uuid.uuid4().hex
    await jobs.enqueue(job_id, SampleTaskRequested(task_id=job_id, message=message), owner_id=None)
    return job_id


async def until(jobs: JobStore, job_id: str, *statuses: str, timeout_s: float = 20) -> Job:
    async with asyncio.timeout(timeout_s):
        while (job := await jobs.get(job_id)) is None or job.status not in statuses:
            await asyncio.sleep(0.02)
    return job


async def runner_of(jobs: JobStore) -> str | None:
    """The consumer holding the sample task's one pending entry (None: nothing pending)."""
    entries: Any = await jobs.redis.xpending_range(
        SampleTaskRequested.STREAM, "sample-task", min="-", max="+", count=10
    )
    assert len(entries) <= 1, entries
    return str(entries[0]["consumer"].decode()) if entries else None


def consumer_of(process: ServiceProcess) -> str:
    line = next(line for line in process.lines if "consumer" in line)
    return str(line["consumer"])


async def test_health_ready_follows_redis_and_sigterm_exits_cleanly(
    start_worker: Start, flushed_redis: str
) -> None:
    worker = await start_worker()
    base = f"http://127.0.0.1:{worker.http_port}"  # type: ignore[attr-defined]  # noted at start
    async with httpx.AsyncClient(base_url=base, timeout=3) as client:
        alive = await client.get("/health")
        ready = await client.get("/health/ready")
    async with connect(flushed_redis) as client_:
        groups = await client_.xinfo_groups(SampleTaskRequested.STREAM)
    code = await worker.terminate(timeout_s=15)

    assert (alive.status_code, ready.status_code) == (200, 200)
    assert ready.json() == {"status": "healthy", "checks": {"redis": "ok"}}
    assert [g["name"] for g in groups] == [b"sample-task"]
    assert code == 0, worker.output()


@pytest.mark.one_redis_server
async def test_health_ready_follows_redis(flushed_redis: str) -> None:
    host, port = flushed_redis.split("//", 1)[1].split("/", 1)[0].split(":")
    proxy = TcpProxy(host, int(port))
    await proxy.open()
    http_port = free_port()
    process = ServiceProcess(
        "worker",
        env={
            "WORKER_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/15",
            "WORKER_HTTP_PORT": str(http_port),
            "WORKER_PURGE_INTERVAL_S": "0",
            "WORKER_REPORT_INTERVAL_S": "0",
            "GRPC_PLAINTEXT": "true",
        },
    )
    await process.start()
    try:
        await process.wait_for_log(lambda line: "Uvicorn running" in line["msg"], timeout_s=20)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=5) as c:
            before = (await c.get("/health/ready")).status_code
            await proxy.cut()
            during = (await c.get("/health/ready")).json()
            alive = (await c.get("/health")).status_code
            await proxy.open()
            async with asyncio.timeout(10):
                while (after := (await c.get("/health/ready")).status_code) != 200:
                    await asyncio.sleep(0.1)
    finally:
        code = await process.terminate(timeout_s=20)
        await proxy.cut()

    assert before == 200
    assert during == {"status": "unhealthy", "checks": {"redis": "unavailable"}}
    assert (alive, after) == (200, 200)
    assert code == 0, process.output()


async def test_a_job_killed_midway_is_reclaimed_by_another_worker(
    start_worker: Start, jobs: JobStore
) -> None:
    # The first would take 30 s, so it is still at it however long the second takes to start.
    first = await start_worker(sample_task_s="30")
    job_id = await enqueue(jobs)
    await until(jobs, job_id, "running")
    second = await start_worker(sample_task_s="3")
    assert await runner_of(jobs) == consumer_of(first)

    await first.kill()
    job = await until(jobs, job_id, "succeeded", timeout_s=30)

    assert (job.result, job.attempts) == ("Task m is complete!", 2)
    assert await runner_of(jobs) is None
    # The second worker did it (its log line may trail the record by a moment).
    await second.wait_for_log(lambda line: line.get("job_id") == job_id, timeout_s=5)


async def test_sigterm_hands_an_unfinished_job_back(start_worker: Start, jobs: JobStore) -> None:
    first = await start_worker(sample_task_s="30", shutdown_grace_s="1", claim_idle_s="30")
    job_id = await enqueue(jobs)
    await until(jobs, job_id, "running")
    second = await start_worker(sample_task_s="0.5", claim_idle_s="30")

    code = await first.terminate(timeout_s=15)
    # Claimable at once despite the 30-second idle time: handed back, not left to time out.
    job = await until(jobs, job_id, "succeeded", timeout_s=10)

    assert code == 0, first.output()
    assert any(line["msg"] == "job handed back" for line in first.lines)
    assert job.attempts == 1
    # The second worker did it (its log line may trail the record by a moment).
    await second.wait_for_log(lambda line: line.get("job_id") == job_id, timeout_s=5)


async def test_sigterm_lets_a_short_job_finish(start_worker: Start, jobs: JobStore) -> None:
    worker = await start_worker(sample_task_s="1", shutdown_grace_s="5")
    job_id = await enqueue(jobs)
    await until(jobs, job_id, "running")

    code = await worker.terminate(timeout_s=15)
    job = await jobs.get(job_id)

    assert code == 0, worker.output()
    assert job is not None
    assert (job.status, job.attempts) == ("succeeded", 1)


async def test_a_thousand_jobs_through_a_crash_each_succeed_exactly_once(
    start_worker: Start, jobs: JobStore
) -> None:
    settings = {"sample_task_s": "0.05", "concurrency": "4"}
    workers = [await start_worker(**settings), await start_worker(**settings)]
    ids = [await enqueue(jobs, str(n)) for n in range(1000)]

    async def succeeded() -> int:
        return sum(1 for line in _successes(workers))

    async with asyncio.timeout(30):
        while await succeeded() < 250:
            await asyncio.sleep(0.01)
    await workers[0].kill()
    workers.append(await start_worker(**settings))
    records = {}
    async with asyncio.timeout(60):
        for job_id in ids:
            records[job_id] = await until(jobs, job_id, "succeeded", "dead", timeout_s=60)

    reruns = sum(job.attempts - 1 for job in records.values())
    # Log lines trail their records by a moment; one may be missing for good if the killed
    # worker died between recording a success and logging it.
    async with asyncio.timeout(10):
        while len({line["job_id"] for line in _successes(workers)}) < 1000 - reruns:
            await asyncio.sleep(0.05)
    completions = collections.Counter(line["job_id"] for line in _successes(workers))
    assert {job.status for job in records.values()} == {"succeeded"}
    assert [job.result for job in records.values()] == [
        f"Task {n} is complete!" for n in range(1000)
    ]
    # Run twice only if the crash interrupted it; completed once, whatever happened.
    assert max(completions.values()) == 1
    # At most what the killed process had taken: its running jobs and the one it had read ahead.
    assert reruns <= 4 + 1, reruns
    assert len(completions) >= 1000 - reruns
    assert await jobs.redis.xlen(dead_stream("sample-task")) == 0
    assert await runner_of(jobs) is None
    assert _successes(workers[2:]), "the restarted worker took part"


def _successes(workers: list[ServiceProcess]) -> list[dict[str, object]]:
    return [line for w in workers for line in w.lines if line["msg"] == "job succeeded"]


async def test_sigterm_gives_back_what_was_read_but_not_started(
    start_worker: Start, jobs: JobStore
) -> None:
    first = await start_worker(
        sample_task_s="30", concurrency="1", shutdown_grace_s="1", claim_idle_s="30"
    )
    ids = [await enqueue(jobs, "a"), await enqueue(jobs, "b")]
    await until(jobs, ids[0], "running")
    # The second entry is read too, and waits for the one slot.
    async with asyncio.timeout(10):
        while (await jobs.redis.xpending(SampleTaskRequested.STREAM, "sample-task"))["pending"] < 2:
            await asyncio.sleep(0.02)
    await start_worker(sample_task_s="0.5", claim_idle_s="30")

    code = await first.terminate(timeout_s=15)
    # Claimable at once despite the 30-second idle time, the running one and the waiting one.
    finished = [await until(jobs, job_id, "succeeded", timeout_s=10) for job_id in ids]

    assert code == 0, first.output()
    assert [job.attempts for job in finished] == [1, 1]


@pytest.fixture
def aof_redis() -> Iterator[ThrowawayRedis]:
    """A Redis of the test's own that keeps every acknowledged write through a restart."""
    with running_redis(appendonly=True) as server:
        yield server


async def _enqueue_when_up(jobs: JobStore, message: str) -> str:
    # As a client would: a write refused while Redis restarts is sent again; only an
    # acknowledged one counts.
    async with asyncio.timeout(20):
        while True:
            try:
                return await enqueue(jobs, message)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                await asyncio.sleep(0.1)


async def test_a_redis_restart_loses_no_acknowledged_job_and_the_worker_resumes(
    aof_redis: ThrowawayRedis,
) -> None:
    async with AsyncExitStack() as stack:
        start = worker_starter(stack, aof_redis.url)
        jobs = JobStore(connect(aof_redis.url), ttl_s=3600)
        stack.push_async_callback(jobs.close)
        await start(sample_task_s="0.02", concurrency="4")
        ids = [await enqueue(jobs, str(n)) for n in range(100)]
        await until(jobs, ids[10], "succeeded")  # running when Redis goes

        await asyncio.to_thread(aof_redis.restart)
        ids += [await _enqueue_when_up(jobs, str(n)) for n in range(100, 150)]

        records = [await until(jobs, job_id, "succeeded", "dead", timeout_s=60) for job_id in ids]

    assert [job.status for job in records] == ["succeeded"] * 150
    assert [job.result for job in records] == [f"Task {n} is complete!" for n in range(150)]
