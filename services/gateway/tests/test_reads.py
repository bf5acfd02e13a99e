"""The read model against a real Redis: copies used, dropped on change, never read stale."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gateway.reads import ReadModel
from meshplate_core.events import ReadsChanged, user_key, username_key
from meshplate_core.redis_client import connect
from meshplate_core.streams import encode


class Source:
    """What users would answer: a value per key, and how often it was asked."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.loads = 0
        self.gate: asyncio.Event | None = None

    def loader(self, key: str) -> object:
        async def load() -> str:
            self.loads += 1
            value = self.values[key]
            if self.gate is not None:
                await self.gate.wait()
            return value

        return load


@contextlib.asynccontextmanager
async def following(redis_url: str, **options: float) -> AsyncIterator[ReadModel]:
    redis = connect(redis_url)
    follower = connect(redis_url)
    await redis.flushdb()
    model = ReadModel(
        redis, ttl_s=options.get("ttl_s", 60.0), max_entries=int(options.get("max_entries", 100))
    )
    task = asyncio.create_task(model.follow(follower))
    await asyncio.wait_for(model.synced.wait(), 5)
    try:
        yield model
    finally:
        model.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await follower.aclose()
        await redis.aclose()


async def publish(redis_url: str, *keys: str) -> None:
    async with connect(redis_url) as redis:
        await redis.xadd(ReadsChanged.STREAM, encode(ReadsChanged(keys=list(keys))))  # type: ignore[arg-type]  # redis-py wants a dict of Any


async def read(model: ReadModel, source: Source, key: str) -> str:
    result: str = await model.read(key, (key,), source.loader(key))  # type: ignore[arg-type]  # the loader is typed loosely for brevity
    return result


async def test_a_copy_answers_again_without_asking_users(redis_url: str) -> None:
    source = Source()
    source.values[user_key(1)] = "ann"
    async with following(redis_url) as model:
        first = await read(model, source, user_key(1))

        second = await read(model, source, user_key(1))

    assert (first, second, source.loads) == ("ann", "ann", 1)


async def test_a_published_change_is_read_at_once(redis_url: str) -> None:
    source = Source()
    source.values[user_key(1)] = "ann"
    async with following(redis_url) as model:
        await read(model, source, user_key(1))
        source.values[user_key(1)] = "anne"

        await publish(redis_url, user_key(1))

        assert await read(model, source, user_key(1)) == "anne"


async def test_a_change_drops_only_the_copies_that_depend_on_it(redis_url: str) -> None:
    source = Source()
    source.values.update({user_key(1): "ann", username_key("bob"): "bob"})
    async with following(redis_url) as model:
        await read(model, source, user_key(1))
        await read(model, source, username_key("bob"))

        await publish(redis_url, username_key("bob"))
        await read(model, source, user_key(1))
        await read(model, source, username_key("bob"))

    assert source.loads == 3


async def test_a_copy_loaded_while_a_change_arrived_is_not_kept(redis_url: str) -> None:
    source = Source()
    source.values[user_key(1)] = "ann"
    async with following(redis_url) as model:
        source.gate = asyncio.Event()
        slow = asyncio.create_task(read(model, source, user_key(1)))
        await asyncio.sleep(0.05)
        source.values[user_key(1)] = "anne"
        await publish(redis_url, user_key(1))
        await asyncio.sleep(0.05)
        source.gate.set()
        assert await slow == "ann"

        assert await read(model, source, user_key(1)) == "anne"


async def test_copies_expire(redis_url: str) -> None:
    source = Source()
    source.values[user_key(1)] = "ann"
    async with following(redis_url, ttl_s=0.05) as model:
        await read(model, source, user_key(1))
        await asyncio.sleep(0.1)

        await read(model, source, user_key(1))

    assert source.loads == 2


async def test_a_full_model_forgets_its_oldest_copies(redis_url: str) -> None:
    source = Source()
    source.values.update({user_key(n): f"user{n}" for n in range(30)})
    async with following(redis_url, max_entries=10) as model:
        for n in range(30):
            await read(model, source, user_key(n))

        loads = source.loads
        newest = await read(model, source, user_key(29))
        reused = source.loads == loads
        oldest = await read(model, source, user_key(0))

    assert (newest, oldest) == ("user29", "user0")
    assert reused
    assert source.loads == loads + 1


async def test_a_zero_lifetime_switches_copies_off(redis_url: str) -> None:
    source = Source()
    source.values[user_key(1)] = "ann"
    async with following(redis_url, ttl_s=0) as model:
        await read(model, source, user_key(1))
        await read(model, source, user_key(1))

    assert source.loads == 2


async def test_without_redis_every_read_goes_to_users() -> None:
    source = Source()
    source.values[user_key(1)] = "ann"
    redis = connect("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    model = ReadModel(redis, ttl_s=60.0)
    model.synced.set()

    answers = [await read(model, source, user_key(1)) for _ in range(3)]
    await redis.aclose()

    assert answers == ["ann"] * 3
    assert source.loads == 3
