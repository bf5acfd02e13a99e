"""Housekeeping on real Redis: streams trimmed of only what every group has finished with, and
only the consumers no live process claims that hold nothing forgotten."""

from __future__ import annotations

import asyncio
from typing import Any

from meshplate_core.redis_client import connect
from worker.housekeeping import forget_gone_consumers, say_alive, trim_consumed


async def test_only_entries_every_group_acknowledged_are_dropped(flushed_redis: str) -> None:
    async with connect(flushed_redis) as client:
        ids = [await client.xadd("jobs", {"n": str(n)}) for n in range(6)]
        for group in ("fast", "slow"):
            await client.xgroup_create("jobs", group, id="0")
        # fast: read and acknowledged everything.
        await client.xreadgroup("fast", "a", {"jobs": ">"})
        await client.xack("jobs", "fast", *ids)
        # slow: read four, acknowledged the first two; entries 4 and 5 not read yet.
        await client.xreadgroup("slow", "b", {"jobs": ">"}, count=4)
        await client.xack("jobs", "slow", ids[0], ids[1])

        dropped = await trim_consumed(client, "jobs")
        left: Any = await client.xrange("jobs")
        await client.xack("jobs", "slow", ids[2], ids[3])
        dropped_later = await trim_consumed(client, "jobs")
        after: Any = await client.xrange("jobs")

    assert dropped == 2
    assert [entry_id for entry_id, _ in left] == ids[2:]
    # Everything read is acknowledged: trimmed up to the last delivered entry, the unread kept.
    assert dropped_later == 1
    assert [entry_id for entry_id, _ in after] == ids[3:]


async def test_a_stream_without_groups_is_left_alone(flushed_redis: str) -> None:
    async with connect(flushed_redis) as client:
        await client.xadd("jobs", {"n": "1"})
        dropped = await trim_consumed(client, "jobs")
        length = await client.xlen("jobs")

    assert (dropped, length) == (0, 1)


async def test_only_unclaimed_consumers_holding_nothing_are_forgotten(flushed_redis: str) -> None:
    async with connect(flushed_redis) as client:
        await client.xadd("jobs", {"n": "1"})
        await client.xgroup_create("jobs", "kind", id="0")
        await client.xreadgroup("kind", "holding", {"jobs": ">"})
        for name in ("gone", "alive"):
            await client.xgroup_createconsumer("jobs", "kind", name)
        await say_alive(client, "alive", for_s=60)

        forgotten = await forget_gone_consumers(client, "jobs", "kind")
        left: Any = await client.xinfo_consumers("jobs", "kind")

    assert forgotten == ["gone"]
    assert {c["name"]: c["pending"] for c in left} == {b"holding": 1, b"alive": 0}


async def test_a_process_is_alive_only_as_long_as_it_says(flushed_redis: str) -> None:
    async with connect(flushed_redis) as client:
        await client.xgroup_create("jobs", "kind", id="$", mkstream=True)
        await client.xgroup_createconsumer("jobs", "kind", "quiet")
        await say_alive(client, "quiet", for_s=1)
        kept = await forget_gone_consumers(client, "jobs", "kind")
        async with asyncio.timeout(5):
            while await client.exists("tasks:consumer:quiet"):
                await asyncio.sleep(0.05)
        gone = await forget_gone_consumers(client, "jobs", "kind")

    assert (kept, gone) == ([], ["quiet"])
