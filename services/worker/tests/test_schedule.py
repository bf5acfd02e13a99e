"""The scheduler on real Redis: one job per slot, however many worker processes schedule."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from meshplate_core.jobs import JobStore
from meshplate_core.redis_client import connect
from meshplate_core.streams import decode
from worker.kinds.purge import PurgeRequested
from worker.schedule import Schedule, Scheduler


async def test_each_slot_is_enqueued_once_by_one_of_several_schedulers(
    flushed_redis: str,
) -> None:
    stores = [JobStore(connect(flushed_redis), ttl_s=60) for _ in range(3)]
    schedulers = [
        Scheduler(
            store,
            [Schedule("purge-expired", 1.0, lambda id_: PurgeRequested(event_id=id_))],
        )
        for store in stores
    ]
    started = time.time()
    tasks = [asyncio.create_task(scheduler.run()) for scheduler in schedulers]
    await asyncio.sleep(3.2)
    stopped = time.time()
    for scheduler in schedulers:
        scheduler.stop()
    await asyncio.gather(*tasks)
    entries: Any = await stores[0].redis.xrange(PurgeRequested.STREAM)
    ids = [decode(PurgeRequested, fields).event_id for _id, fields in entries]
    records = [await stores[0].get(job_id) for job_id in ids]
    for store in stores:
        await store.close()

    assert len(set(ids)) == len(ids), ids
    slots = sorted(int(job_id.rsplit("-", 1)[1]) for job_id in ids)
    # Every slot from the one running at the start (or the next, if the first tick came after
    # it ended); the one begun just before the stop may not have been reached by a tick.
    assert slots[0] in (math.floor(started), math.floor(started) + 1)
    assert slots == list(range(slots[0], slots[0] + len(slots)))
    assert slots[-1] in (math.floor(stopped) - 1, math.floor(stopped))
    assert all(r is not None and (r.status, r.system) == ("queued", True) for r in records)


async def test_a_schedule_of_zero_is_off(flushed_redis: str) -> None:
    store = JobStore(connect(flushed_redis), ttl_s=60)
    scheduler = Scheduler(store, [Schedule("never", 0, lambda id_: PurgeRequested(event_id=id_))])
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.2)
    scheduler.stop()
    await task
    length = await store.redis.xlen(PurgeRequested.STREAM)
    await store.close()

    assert length == 0


async def test_schedules_begin_once_their_services_can_be_reached(flushed_redis: str) -> None:
    reachable = asyncio.Event()
    kept: list[str] = []

    async def housekeeping() -> None:
        kept.append("kept")

    store = JobStore(connect(flushed_redis), ttl_s=60)
    scheduler = Scheduler(
        store,
        [Schedule("purge-expired", 3600, lambda id_: PurgeRequested(event_id=id_))],
        housekeeping=housekeeping,
        housekeeping_s=0.05,
        tick_s=0.05,
        ready=reachable.wait,
    )
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.3)
    before = await store.redis.xlen(PurgeRequested.STREAM)
    reachable.set()
    async with asyncio.timeout(5):
        while not await store.redis.xlen(PurgeRequested.STREAM):
            await asyncio.sleep(0.05)
    scheduler.stop()
    await task
    await store.close()

    assert before == 0
    # Housekeeping (this consumer saying it is alive) did not wait.
    assert kept
