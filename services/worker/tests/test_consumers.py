"""Forgetting the consumers of gone processes on real Redis: only those no live process claims
and that hold nothing go."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as redis

from worker.consumers import forget_gone_consumers, say_alive


async def test_only_unclaimed_consumers_holding_nothing_are_forgotten(flushed_redis: str) -> None:
    async with redis.Redis.from_url(flushed_redis) as client:
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
    async with redis.Redis.from_url(flushed_redis) as client:
        await client.xgroup_create("jobs", "kind", id="$", mkstream=True)
        await client.xgroup_createconsumer("jobs", "kind", "quiet")
        await say_alive(client, "quiet", for_s=1)
        kept = await forget_gone_consumers(client, "jobs", "kind")
        async with asyncio.timeout(5):
            while await client.exists("tasks:consumer:quiet"):
                await asyncio.sleep(0.05)
        gone = await forget_gone_consumers(client, "jobs", "kind")

    assert (kept, gone) == ([], ["quiet"])
