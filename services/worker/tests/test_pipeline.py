"""Script calls of many tasks sent together, on real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.exceptions import ResponseError

from meshplate_core.redis_client import RedisClient, connect
from worker.pipeline import Call, ScriptPipeline

_ECHO = "return ARGV[1]"
_FAIL = "return redis.error_reply('refused ' .. ARGV[1])"
_INCR = "return redis.call('INCR', KEYS[1])"


@pytest.fixture
async def client(flushed_redis: str) -> AsyncIterator[RedisClient]:
    async with connect(flushed_redis) as client:
        yield client


async def test_replies_come_in_order_and_one_failure_stays_its_own(client: RedisClient) -> None:
    pipeline = ScriptPipeline(client)
    echo, fail = pipeline.script(_ECHO), pipeline.script(_FAIL)

    replies = await pipeline.call_many(
        [Call(echo, [], ["a"]), Call(fail, [], ["b"]), Call(echo, [], ["c"])]
    )

    assert replies[0] == b"a"
    assert isinstance(replies[1], ResponseError)
    assert "refused b" in str(replies[1])
    assert replies[2] == b"c"


async def test_a_single_call_raises_its_own_failure(client: RedisClient) -> None:
    pipeline = ScriptPipeline(client)

    with pytest.raises(ResponseError, match="refused x"):
        await pipeline.call(Call(pipeline.script(_FAIL), [], ["x"]))


async def test_calls_of_many_tasks_each_get_their_own_reply(client: RedisClient) -> None:
    pipeline = ScriptPipeline(client)
    incr = pipeline.script(_INCR)

    replies = await asyncio.gather(*(pipeline.call(Call(incr, ["n"], [])) for _ in range(50)))

    assert sorted(replies) == list(range(1, 51))
    assert await client.get("n") == b"50"


async def test_scripts_redis_does_not_know_are_loaded(client: RedisClient) -> None:
    pipeline = ScriptPipeline(client)
    echo = pipeline.script(_ECHO)
    await pipeline.call(Call(echo, [], ["before"]))
    await client.script_flush()

    reply = await pipeline.call(Call(echo, [], ["after"]))

    assert reply == b"after"


async def test_a_lost_connection_fails_every_call_of_the_round() -> None:
    client = connect("redis://127.0.0.1:1/0")
    pipeline = ScriptPipeline(client)
    echo = pipeline.script(_ECHO)

    results = await asyncio.gather(
        pipeline.call(Call(echo, [], ["a"])),
        pipeline.call_many([Call(echo, [], ["b"])]),
        return_exceptions=True,
    )
    await client.aclose()

    assert all(
        isinstance(result, (ConnectionError, OSError, redis.RedisError)) for result in results
    )
