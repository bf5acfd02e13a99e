"""A Redis Cluster master killed (SIGKILL) under work, its replica promoted: the job system, the
rate limiter and a revocation follower carry on by themselves on the new master, with nothing
lost that had reached the replica.

Each part's keys share one hash tag, so the test kills the master of the part's own slot: the job
records and streams (`{jobs}`), a ratelimit shard, the revocation stream. Redis replicates
asynchronously: a write a master acknowledged but had not passed on yet dies with it (Redis's own
guarantee, docs/deploying.md), so the test lets replication catch up before each kill, and counts
on nothing acknowledged by the old master afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from meshplate_core.database import open_engine
from meshplate_core.errors import UnavailableError
from meshplate_core.events import SampleTaskRequested, TokensRevoked
from meshplate_core.following import Follower, following
from meshplate_core.jobs import JobStore
from meshplate_core.redis_client import REDIS_FAILURES, connect
from meshplate_core.streams import encode
from meshplate_core.transactions import Database
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.redis_cluster import ThrowawayRedisCluster, running_redis_cluster
from meshplate_testing.servers import free_port
from ratelimit.limiter import Limiter
from ratelimit.shards import Shards

# Jobs acknowledged before the kill, and how long the worker spends on each (so some run while
# the master dies).
BEFORE = 30
TASK_S = "0.05"
# How long every acknowledged job has to succeed, failover included.
SETTLE_S = 30.0


@pytest.fixture
def cluster() -> Iterator[ThrowawayRedisCluster]:
    """A cluster of this test's own: it loses a master."""
    with running_redis_cluster() as cluster:
        yield cluster


@contextlib.asynccontextmanager
async def _worker(url: str) -> AsyncIterator[ServiceProcess]:
    process = ServiceProcess(
        "worker",
        env={
            "WORKER_REDIS_URL": url,
            "WORKER_HTTP_PORT": str(free_port()),
            "WORKER_CLAIM_IDLE_S": "1",
            "WORKER_CLAIM_INTERVAL_S": "0.1",
            "WORKER_SAMPLE_TASK_S": TASK_S,
            "WORKER_CONCURRENCY": "4",
            "WORKER_RETRY_BACKOFF_S": "0.2",
            "WORKER_MAX_DELIVERIES": "10",
            "WORKER_PURGE_INTERVAL_S": "0",
            "WORKER_REPORT_INTERVAL_S": "0",
            "GRPC_PLAINTEXT": "true",
        },
    )
    await process.start()
    try:
        await process.wait_for_log(lambda line: "Uvicorn running" in line["msg"], timeout_s=20)
        yield process
    finally:
        await process.terminate(timeout_s=20)


async def _enqueue(jobs: JobStore) -> str:
    job_id = uuid.uuid4().hex
    event = SampleTaskRequested(task_id=job_id, message=job_id)
    await jobs.enqueue(job_id, event, owner_id=None)
    return job_id


async def _all_succeeded(jobs: JobStore, ids: list[str]) -> dict[str, str]:
    """Each job's last status, once all succeeded or SETTLE_S passed."""
    statuses: dict[str, str] = {}
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        for job_id in ids:
            with contextlib.suppress(*REDIS_FAILURES):
                job = await jobs.get(job_id)
                statuses[job_id] = "missing" if job is None else job.status
        if all(statuses.get(job_id) == "succeeded" for job_id in ids):
            break
        await asyncio.sleep(0.2)
    return statuses


async def test_jobs_acknowledged_before_and_after_a_master_dies_all_succeed(
    cluster: ThrowawayRedisCluster,
) -> None:
    jobs = JobStore(connect(cluster.url, socket_timeout=1, socket_connect_timeout=1), ttl_s=600)
    try:
        async with _worker(cluster.url):
            before = [await _enqueue(jobs) for _ in range(BEFORE)]
            await asyncio.to_thread(cluster.wait_replicated, JobStore.key("x"))
            killed = cluster.master_of(JobStore.key("x"))
            cluster.kill(killed)
            # Enqueued meanwhile, as the gateway would, with its retries: only the new master can
            # acknowledge them.
            after: list[str] = []
            refused = 0
            promoted = asyncio.create_task(
                asyncio.to_thread(cluster.wait_promoted, JobStore.key("x"), killed)
            )
            while len(after) < 10:
                try:
                    after.append(await _enqueue(jobs))
                except REDIS_FAILURES:
                    refused += 1
                    await asyncio.sleep(0.1)
            await promoted
            statuses = await _all_succeeded(jobs, before + after)
    finally:
        await jobs.close()

    assert refused > 0  # the enqueues did meet the failover
    assert {job_id: status for job_id, status in statuses.items() if status != "succeeded"} == {}


async def test_counts_survive_a_master_and_the_limiter_carries_on_on_its_replica(
    cluster: ThrowawayRedisCluster, stack_database_urls: dict[str, str]
) -> None:
    engine = open_engine(
        stack_database_urls["ratelimit"], pool_size=2, application_name="failover-tests"
    )
    redis = connect(cluster.url, socket_timeout=1, socket_connect_timeout=1)
    shards = Shards.spread(3)
    limiter = Limiter(
        database=Database(engine),
        redis=redis,
        default_limit=5,
        default_period_s=600,
        fail_open=False,
        redis_timeout_s=1.0,
        shards=shards,
    )
    subject = "user:42"
    shard_key = shards.version_key(shards.of(subject))
    try:
        counted = [await limiter.check(subject, None, "/api/v1/x", 1) for _ in range(5)]
        await asyncio.to_thread(cluster.wait_replicated, shard_key)
        await asyncio.to_thread(cluster.fail_over, shard_key)
        # The limiter was not restarted: it finds the new master by itself (fail closed until).
        deadline = time.monotonic() + 10
        while True:
            try:
                after = await limiter.check(subject, None, "/api/v1/x", 1)
                break
            except UnavailableError:
                assert time.monotonic() < deadline, "the limiter never reached the new master"
                await asyncio.sleep(0.2)
        fresh = await asyncio.gather(
            *(limiter.check("user:43", None, "/api/v1/x", 1) for _ in range(20))
        )
    finally:
        await limiter.close()
        await redis.aclose()
        await engine.dispose()

    assert all(decision.allowed for decision in counted)
    # The five counted before the kill were on the replica: the sixth is refused.
    assert not after.allowed
    assert sum(decision.allowed for decision in fresh) == 5


async def test_a_revocation_follower_reads_on_from_the_promoted_replica(
    cluster: ThrowawayRedisCluster,
) -> None:
    seen: list[str] = []
    follower = Follower(TokensRevoked, lambda event: seen.append(event.event_id))
    publisher = connect(cluster.url, socket_timeout=1, socket_connect_timeout=1)

    async def publish() -> str:
        event = TokensRevoked(user_id=7, expires_at=datetime.now(UTC) + timedelta(minutes=5))
        await publisher.xadd(TokensRevoked.STREAM, encode(event))  # type: ignore[arg-type]  # redis-py wants a dict of Any
        return event.event_id

    try:
        async with following(cluster.url, follower):
            first = await publish()
            await asyncio.wait_for(follower.synced.wait(), 10)
            await asyncio.to_thread(cluster.wait_replicated, TokensRevoked.STREAM)
            await asyncio.to_thread(cluster.fail_over, TokensRevoked.STREAM)
            deadline = time.monotonic() + 10
            while True:
                try:
                    second = await publish()
                    break
                except REDIS_FAILURES:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
            deadline = time.monotonic() + 10
            while second not in seen and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
    finally:
        await publisher.aclose()

    assert seen.count(first) == 1
    assert seen.count(second) == 1
