"""The delivery rules on a real broker and real Redis: retries with back-off, the dead-letter
stream, idempotency, malformed entries, reclaiming what a dead consumer left pending."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from meshplate_core.dead_letters import dead_stream
from meshplate_core.events import JOBS_TAG, Event
from meshplate_core.jobs import Job, JobStore
from meshplate_core.redis_client import RedisClient, connect
from meshplate_core.streams import encode
from worker.app import Worker, build_worker, create_groups
from worker.kinds import JobKind, PermanentError
from worker.settings import Settings


class Chore(Event):
    """A test job kind's event."""

    STREAM: ClassVar[str] = f"{JOBS_TAG}:test.chores"

    job: str


def settings(redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "consumer": "test-a",
        "max_deliveries": 3,
        "retry_backoff_s": 0.1,
        "retry_backoff_max_s": 1.0,
        "claim_idle_s": 0.3,
        "claim_interval_s": 0.05,
        "sample_task_s": 0,
        "purge_interval_s": 0,
        "report_interval_s": 0,
        "shutdown_grace_s": 2,
        # No gRPC service is called here.
        "grpc_plaintext": True,
        **overrides,
    }
    return Settings(_env_file=None, **values)


def chore_kind(run: Callable[[Chore], Any]) -> JobKind[Chore]:
    return JobKind(name="chore", model=Chore, run=run, job_id=lambda chore: chore.job)


@asynccontextmanager
async def running(redis_url: str, *kinds: JobKind[Any], **overrides: Any) -> AsyncIterator[Worker]:
    worker = build_worker(settings(redis_url, **overrides), list(kinds))
    await create_groups(worker)
    await worker.broker.start()
    try:
        yield worker
    finally:
        await worker.broker.stop()
        await worker.close()


async def until_finished(jobs: JobStore, job_id: str, *, timeout_s: float = 10) -> Job:
    async with asyncio.timeout(timeout_s):
        while True:
            job = await jobs.get(job_id)
            if job is not None and job.status in ("succeeded", "dead"):
                return job
            await asyncio.sleep(0.02)


async def enqueue(client: RedisClient, *chores: Chore) -> None:
    for chore in chores:
        # redis-py's stubs want a dict of its own invariant key and value unions.
        await client.xadd(Chore.STREAM, encode(chore))  # type: ignore[arg-type]


async def pending(client: RedisClient, stream: str, group: str) -> int:
    info = await client.xpending(stream, group)
    return int(info["pending"])


async def test_fails_twice_then_succeeds_with_three_attempts(flushed_redis: str) -> None:
    calls: list[float] = []

    async def flaky(_chore: Chore) -> str:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) < 3:
            raise ConnectionError(f"try {len(calls)} failed")
        return "done"

    async with running(flushed_redis, chore_kind(flaky)) as worker:
        await enqueue(worker.jobs.redis, Chore(job="j1"))
        job = await until_finished(worker.jobs, "j1")
        left = await pending(worker.jobs.redis, Chore.STREAM, "chore")

    assert (job.status, job.attempts, job.result, job.error) == ("succeeded", 3, "done", None)
    assert left == 0
    # Back-off: at least 0.1 s, then 0.2 s, and never sooner than the claim idle time (0.3 s).
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    assert all(gap >= 0.3 for gap in gaps), gaps


async def test_a_failed_attempt_shows_failed_with_its_error_until_the_retry(
    flushed_redis: str,
) -> None:
    async def failing(_chore: Chore) -> str:
        raise ValueError("the printer is on fire")

    async with running(
        flushed_redis, chore_kind(failing), retry_backoff_s=5, retry_backoff_max_s=5
    ) as worker:
        await enqueue(worker.jobs.redis, Chore(job="j1"))
        async with asyncio.timeout(5):
            while (job := await worker.jobs.get("j1")) is None or job.status != "failed":
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.8)  # claimed (idle 0.3 s) more than once: still waiting
        later = await worker.jobs.get("j1")

    assert (job.attempts, job.error) == (1, "ValueError: the printer is on fire")
    assert later is not None
    assert (later.status, later.attempts) == ("failed", 1)


async def test_always_failing_is_dead_on_the_dead_letter_stream_with_its_last_error(
    flushed_redis: str,
) -> None:
    attempts = 0

    async def failing(_chore: Chore) -> str:
        nonlocal attempts
        attempts += 1
        raise TimeoutError(f"attempt {attempts} timed out")

    chore = Chore(job="j1")
    async with running(flushed_redis, chore_kind(failing)) as worker:
        await enqueue(worker.jobs.redis, chore)
        job = await until_finished(worker.jobs, "j1")
        await asyncio.sleep(0.5)  # nothing runs it again
        dead: Any = await worker.jobs.redis.xrange(dead_stream("chore"))
        left = await pending(worker.jobs.redis, Chore.STREAM, "chore")

    assert (job.status, job.attempts, job.error) == ("dead", 3, "TimeoutError: attempt 3 timed out")
    assert job.finished_at is not None
    assert attempts == 3
    assert left == 0
    [(_id, fields)] = dead
    assert fields[b"dead.error"] == b"TimeoutError: attempt 3 timed out"
    assert fields[b"dead.attempts"] == b"3"
    assert (fields[b"dead.stream"], fields[b"dead.group"]) == (Chore.STREAM.encode(), b"chore")
    assert fields[b"__data__"] == encode(chore)["__data__"].encode()


async def test_a_permanent_error_is_dead_at_once(flushed_redis: str) -> None:
    async def refusing(_chore: Chore) -> str:
        raise PermanentError("no such mailbox")

    async with running(flushed_redis, chore_kind(refusing)) as worker:
        await enqueue(worker.jobs.redis, Chore(job="j1"))
        job = await until_finished(worker.jobs, "j1")

    assert (job.status, job.attempts, job.error) == ("dead", 1, "no such mailbox")


async def test_a_redelivered_event_is_not_run_again(flushed_redis: str) -> None:
    runs: list[str] = []

    async def once(chore: Chore) -> str:
        runs.append(chore.job)
        return "ok"

    chore = Chore(job="j1")
    async with running(flushed_redis, chore_kind(once)) as worker:
        await enqueue(worker.jobs.redis, chore)
        await until_finished(worker.jobs, "j1")
        # The same event again, as a publisher retrying after a lost reply would add it.
        await enqueue(worker.jobs.redis, chore, Chore(job="j2"))
        await until_finished(worker.jobs, "j2")
        async with asyncio.timeout(5):
            while await pending(worker.jobs.redis, Chore.STREAM, "chore"):
                await asyncio.sleep(0.02)
        job = await worker.jobs.get("j1")

    assert runs == ["j1", "j2"]
    assert job is not None
    assert (job.status, job.attempts) == ("succeeded", 1)


async def test_a_malformed_entry_goes_to_the_dead_letter_stream(flushed_redis: str) -> None:
    async def never(_chore: Chore) -> str:
        raise AssertionError("not a chore")

    async with running(flushed_redis, chore_kind(never)) as worker:
        client = worker.jobs.redis
        await client.xadd(Chore.STREAM, {"__data__": '{"data": "{\\"nope\\": 1}"}'})
        await client.xadd(Chore.STREAM, {"garbage": "x"})
        # Says JSON, is not: FastStream's own decoder would raise before any handler ran.
        envelope = '{"data": "not json", "headers": {"content-type": "application/json"}}'
        await client.xadd(Chore.STREAM, {"__data__": envelope})
        async with asyncio.timeout(5):
            while await client.xlen(dead_stream("chore")) < 3:
                await asyncio.sleep(0.02)
        left = await pending(client, Chore.STREAM, "chore")
        dead: Any = await client.xrange(dead_stream("chore"))

    assert left == 0
    assert all(fields[b"dead.error"].startswith(b"malformed entry") for _id, fields in dead)


async def test_entries_left_pending_by_a_dead_consumer_are_reclaimed(flushed_redis: str) -> None:
    async def fine(chore: Chore) -> str:
        return f"done by {chore.job}"

    async with connect(flushed_redis) as client:
        await client.xgroup_create(Chore.STREAM, "chore", id="0", mkstream=True)
        await enqueue(client, Chore(job="j1"))
        # A consumer that read the entry and died.
        await client.xreadgroup("chore", "dead-consumer", {Chore.STREAM: ">"})
    async with running(flushed_redis, chore_kind(fine)) as worker:
        job = await until_finished(worker.jobs, "j1")
        owners = await worker.jobs.redis.xinfo_consumers(Chore.STREAM, "chore")

    assert (job.status, job.result) == ("succeeded", "done by j1")
    assert {o["name"]: o["pending"] for o in owners}[b"dead-consumer"] == 0


async def test_gone_consumers_are_forgotten_once_their_entries_are_reclaimed(
    flushed_redis: str,
) -> None:
    async def fine(chore: Chore) -> str:
        return f"done by {chore.job}"

    async with connect(flushed_redis) as client:
        await client.xgroup_create(Chore.STREAM, "chore", id="0", mkstream=True)
        await enqueue(client, Chore(job="j1"))
        # Two gone processes: one died holding a job, one with nothing pending.
        await client.xreadgroup("chore", "gone-busy", {Chore.STREAM: ">"})
        await client.xgroup_createconsumer(Chore.STREAM, "chore", "gone-idle")
    # Two live workers, housekeeping every 0.2 s.
    async with (
        running(flushed_redis, chore_kind(fine), trim_interval_s=0.2) as first,
        running(flushed_redis, chore_kind(fine), consumer="test-b", trim_interval_s=0.2) as second,
    ):
        schedulers = [asyncio.create_task(w.scheduler.run()) for w in (first, second)]
        await enqueue(first.jobs.redis, Chore(job="j2"))
        jobs = [await until_finished(first.jobs, job_id) for job_id in ("j1", "j2")]
        async with asyncio.timeout(10):
            while True:
                owners: Any = await first.jobs.redis.xinfo_consumers(Chore.STREAM, "chore")
                if not any(o["name"].startswith(b"gone-") for o in owners):
                    break
                await asyncio.sleep(0.1)
        await asyncio.sleep(1)  # five more rounds: the live ones stay
        owners = await first.jobs.redis.xinfo_consumers(Chore.STREAM, "chore")
        for worker in (first, second):
            worker.scheduler.stop()
        await asyncio.gather(*schedulers)

    assert [job.status for job in jobs] == ["succeeded", "succeeded"]
    # Whichever live workers were given an entry are still there, holding nothing.
    names = {o["name"] for o in owners}
    assert names, owners
    assert names <= {b"test-a", b"test-b"}, names
    assert all(o["pending"] == 0 for o in owners)


async def test_jobs_enqueued_before_any_worker_ran_are_read(flushed_redis: str) -> None:
    async def fine(_chore: Chore) -> str:
        return "ok"

    async with connect(flushed_redis) as client:
        await enqueue(client, Chore(job="early"))
    async with running(flushed_redis, chore_kind(fine)) as worker:
        job = await until_finished(worker.jobs, "early")
    # A second process joining the existing group reads new entries too.
    async with running(flushed_redis, chore_kind(fine), consumer="test-b") as worker:
        await enqueue(worker.jobs.redis, Chore(job="late"))
        late = await until_finished(worker.jobs, "late")

    assert (job.status, late.status) == ("succeeded", "succeeded")


async def test_long_jobs_keep_their_entry_from_being_claimed(flushed_redis: str) -> None:
    runs = 0

    async def slow(_chore: Chore) -> str:
        nonlocal runs
        runs += 1
        await asyncio.sleep(3)  # three claim idle times
        return "ok"

    # Heartbeats every third of the idle time (1 s here: a loaded machine's pauses stay below).
    async with (
        running(flushed_redis, chore_kind(slow), claim_idle_s=1) as first,
        running(flushed_redis, chore_kind(slow), consumer="test-b", claim_idle_s=1),
    ):
        await enqueue(first.jobs.redis, Chore(job="j1"))
        job = await until_finished(first.jobs, "j1")

    assert (job.status, job.attempts, runs) == ("succeeded", 1, 1)


async def test_an_overtaken_attempt_is_cancelled_and_writes_nothing(flushed_redis: str) -> None:
    runs: list[str] = []

    async def slow(_chore: Chore) -> str:
        runs.append("started")
        try:
            await asyncio.sleep(1.5 if len(runs) == 1 else 0)
        except asyncio.CancelledError:
            runs.append("cancelled")
            raise
        return "finished"

    async with running(flushed_redis, chore_kind(slow)) as worker:
        client = worker.jobs.redis
        await enqueue(client, Chore(job="j1"))
        async with asyncio.timeout(5):
            while (job := await worker.jobs.get("j1")) is None or job.status != "running":
                await asyncio.sleep(0.01)
        # As if this process had stalled past its lease: another consumer claimed the entry.
        [pending_entry] = await client.xpending_range(Chore.STREAM, "chore", "-", "+", 1)
        await client.xclaim(Chore.STREAM, "chore", "thief", 0, [pending_entry["message_id"]])
        await client.hset(JobStore.key("j1"), "lease_ms", 0)
        finished = await until_finished(worker.jobs, "j1")

    # The thief never ran it; once idle, the entry was claimed back and attempt 2 ran it.
    assert runs == ["started", "cancelled", "started"]
    assert (finished.status, finished.attempts, finished.result) == ("succeeded", 2, "finished")


async def test_a_job_that_keeps_killing_its_worker_ends_dead(flushed_redis: str) -> None:
    async def never(_chore: Chore) -> str:
        raise AssertionError("must not run")

    async with connect(flushed_redis) as client:
        await client.xgroup_create(Chore.STREAM, "chore", id="0", mkstream=True)
        await enqueue(client, Chore(job="j1"))
        await client.xreadgroup("chore", "crashed", {Chore.STREAM: ">"})
        # Its third delivery was running when its worker died, like the two before.
        await client.hset(
            JobStore.key("j1"),
            mapping={
                "id": "j1",
                "status": "running",
                "attempts": 3,
                "enqueued_at": "2026-01-01T00:00:00+00:00",
            },
        )
    async with running(flushed_redis, chore_kind(never)) as worker:
        job = await until_finished(worker.jobs, "j1")

    assert (job.status, job.attempts) == ("dead", 3)
    assert job.error == "gave up after 3 deliveries; last: the worker stopped while running it"


async def test_no_more_than_concurrency_jobs_of_a_kind_run_at_once(flushed_redis: str) -> None:
    now = most = 0
    go = asyncio.Event()

    async def gated(_chore: Chore) -> str:
        nonlocal now, most
        now += 1
        most = max(most, now)
        try:
            await go.wait()
        finally:
            now -= 1
        return "ok"

    async with running(flushed_redis, chore_kind(gated), concurrency=2) as worker:
        await enqueue(worker.jobs.redis, *(Chore(job=f"j{n}") for n in range(6)))
        async with asyncio.timeout(5):
            while now < 2:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # room for a third to start, were it allowed to
        while_held = most
        go.set()
        jobs = [await until_finished(worker.jobs, f"j{n}") for n in range(6)]

    assert while_held == 2
    assert most == 2
    assert {(job.status, job.attempts) for job in jobs} == {("succeeded", 1)}


async def test_a_malformed_entry_does_not_hold_up_those_read_with_it(flushed_redis: str) -> None:
    async def fine(chore: Chore) -> str:
        return f"done by {chore.job}"

    async with connect(flushed_redis) as client:
        await client.xgroup_create(Chore.STREAM, "chore", id="0", mkstream=True)
        await enqueue(client, Chore(job="j1"))
        await client.xadd(Chore.STREAM, {"garbage": "x"})
        await enqueue(client, Chore(job="j2"))
    async with running(flushed_redis, chore_kind(fine)) as worker:
        jobs = [await until_finished(worker.jobs, job_id) for job_id in ("j1", "j2")]
        async with asyncio.timeout(5):
            while await pending(worker.jobs.redis, Chore.STREAM, "chore"):
                await asyncio.sleep(0.02)
        dead = await worker.jobs.redis.xlen(dead_stream("chore"))

    assert [job.result for job in jobs] == ["done by j1", "done by j2"]
    assert dead == 1
