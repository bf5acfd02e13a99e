"""The read cache: never stale after a write, one load per miss storm, harmless when Redis fails."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate.users.v1 import users_pb2
from meshplate_core.events import ReadsChanged, post_key, user_key, username_key
from meshplate_core.mtls import Tls
from meshplate_core.redis_client import connect
from meshplate_core.streams import decode
from meshplate_testing.proxy import TcpProxy
from users.cache import Codec, ReadCache
from users.settings import Settings

from .conftest import Person, person, serving, sign_up

if TYPE_CHECKING:
    from meshplate.users.v1.users_pb2_grpc import UsersServiceAsyncStub


class QueryCounter:
    """Counts the statements an engine sends that mention a table."""

    def __init__(self, engine: AsyncEngine, table: str) -> None:
        self._engine = engine.sync_engine
        self._needle = f"FROM {table}"
        self.count = 0

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self._needle in statement:
            self.count += 1

    @contextlib.contextmanager
    def counting(self) -> Iterator[QueryCounter]:
        """Count while inside."""
        event.listen(self._engine, "before_cursor_execute", self._seen)
        try:
            yield self
        finally:
            event.remove(self._engine, "before_cursor_execute", self._seen)


async def _post(users: UsersServiceAsyncStub, actor: Person, title: str) -> users_pb2.Post:
    request = users_pb2.CreatePostRequest(author_id=actor.user_id, title=title, text="Body")
    return (await users.CreatePost(request, metadata=actor.metadata)).post


async def _titles(users: UsersServiceAsyncStub, username: str = "ann") -> list[str]:
    reply = await users.ListPosts(
        users_pb2.ListPostsRequest(author_username=username, page=1, items_per_page=100)
    )
    return [post.title for post in reply.posts]


async def _title(users: UsersServiceAsyncStub, post_id: int, username: str = "ann") -> str:
    reply = await users.GetPost(users_pb2.GetPostRequest(id=post_id, author_username=username))
    return reply.post.title


async def test_a_page_read_twice_costs_one_query(
    users: UsersServiceAsyncStub, engine: AsyncEngine
) -> None:
    ann = await sign_up(users, "ann")
    for title in ("one", "two"):
        await _post(users, ann, title)

    with QueryCounter(engine, "post").counting() as queries:
        first, second = await _titles(users), await _titles(users)

    assert first == second == ["two", "one"]
    assert queries.count == 1


async def test_every_write_is_seen_by_the_very_next_read(users: UsersServiceAsyncStub) -> None:
    ann = await sign_up(users, "ann")
    first = await _post(users, ann, "first")
    assert (await _titles(users), await _title(users, first.id)) == (["first"], "first")

    second = await _post(users, ann, "second")
    assert await _titles(users) == ["second", "first"]

    await users.UpdatePost(
        users_pb2.UpdatePostRequest(id=first.id, author_username="ann", title="edited"),
        metadata=ann.metadata,
    )
    assert (await _titles(users), await _title(users, first.id)) == (["second", "edited"], "edited")

    await users.DeletePost(
        users_pb2.DeletePostRequest(id=second.id, author_username="ann"), metadata=ann.metadata
    )
    assert await _titles(users) == ["edited"]

    root = person(1, superuser=True)
    await users.DeletePost(
        users_pb2.DeletePostRequest(id=first.id, author_username="ann", hard=True),
        metadata=root.metadata,
    )
    assert await _titles(users) == []


async def test_username_change_and_deletion_are_seen_at_once(users: UsersServiceAsyncStub) -> None:
    ann = await sign_up(users, "ann")
    post = await _post(users, ann, "hello")
    await users.GetUser(users_pb2.GetUserRequest(username="ann"))
    await _title(users, post.id)

    await users.UpdateUser(users_pb2.UpdateUserRequest(id=ann.user_id, username="annie"))

    with pytest.raises(grpc.aio.AioRpcError):
        await users.GetUser(users_pb2.GetUserRequest(username="ann"))
    with pytest.raises(grpc.aio.AioRpcError):
        await _title(users, post.id, "ann")
    assert await _title(users, post.id, "annie") == "hello"

    await users.DeleteUser(users_pb2.DeleteUserRequest(id=ann.user_id))
    with pytest.raises(grpc.aio.AioRpcError):
        await users.GetUser(users_pb2.GetUserRequest(username="annie"))
    with pytest.raises(grpc.aio.AioRpcError):
        await _titles(users, "annie")


@pytest.mark.parametrize("hard", [False, True])
async def test_a_deleted_user_cached_by_name_and_id_is_gone_at_once(
    users: UsersServiceAsyncStub, engine: AsyncEngine, hard: bool
) -> None:
    ann = await sign_up(users, "ann")
    by_name = users_pb2.GetUserRequest(username="ann")
    by_id = users_pb2.GetUserRequest(id=ann.user_id)
    with QueryCounter(engine, '"user"').counting() as queries:
        for _ in range(2):
            await users.GetUser(by_name)
            await users.GetUser(by_id)
    assert queries.count == 2  # both cached

    await users.DeleteUser(users_pb2.DeleteUserRequest(id=ann.user_id, hard=hard))

    for request in (by_name, by_id):
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await users.GetUser(request)
        assert gone.value.code() is grpc.StatusCode.NOT_FOUND


async def test_a_user_read_by_id_twice_costs_one_query_and_sees_every_change(
    users: UsersServiceAsyncStub, engine: AsyncEngine
) -> None:
    ann = await sign_up(users, "ann")
    by_id = users_pb2.GetUserRequest(id=ann.user_id)

    with QueryCounter(engine, '"user"').counting() as queries:
        first, second = await users.GetUser(by_id), await users.GetUser(by_id)
    await users.UpdateUser(users_pb2.UpdateUserRequest(id=ann.user_id, name="Anne"))
    renamed = await users.GetUser(by_id)
    await users.SetUserTier(users_pb2.SetUserTierRequest(user_id=ann.user_id, tier_id=1))
    await users.DeleteUser(users_pb2.DeleteUserRequest(id=ann.user_id))
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await users.GetUser(by_id)

    assert (first.user.name, second.user.name, queries.count) == ("Ann", "Ann", 1)
    assert renamed.user.name == "Anne"
    assert gone.value.code() is grpc.StatusCode.NOT_FOUND


async def test_every_write_tells_copy_holders_what_changed(
    users: UsersServiceAsyncStub, settings: Settings
) -> None:
    ann = await sign_up(users, "ann")
    post = await _post(users, ann, "hello")
    await users.UpdateUser(users_pb2.UpdateUserRequest(id=ann.user_id, username="annie"))
    await users.DeletePost(
        users_pb2.DeletePostRequest(id=post.id, author_username="annie"), metadata=ann.metadata
    )

    async with connect(settings.redis_url) as redis:
        entries: Any = await redis.xrange(ReadsChanged.STREAM)
    published = [sorted(decode(ReadsChanged, fields).keys) for _id, fields in entries]

    assert published == [
        [username_key("ann")],
        sorted([username_key("ann"), username_key("annie"), user_key(ann.user_id)]),
        sorted([username_key("annie"), post_key(post.id)]),
    ]


async def test_racing_writers_and_readers_leave_no_stale_entry(
    users: UsersServiceAsyncStub,
) -> None:
    ann = await sign_up(users, "ann")
    post = await _post(users, ann, "v0")
    stop = asyncio.Event()

    async def write(n: int) -> None:
        await users.UpdatePost(
            users_pb2.UpdatePostRequest(id=post.id, author_username="ann", title=f"v{n}"),
            metadata=ann.metadata,
        )

    async def read() -> None:
        while not stop.is_set():
            await asyncio.gather(_title(users, post.id), _titles(users))

    readers = [asyncio.create_task(read()) for _ in range(4)]
    for n in range(1, 31):
        await write(n)
        await asyncio.sleep(random.random() / 200)
    final = f"v{random.randint(100, 999)}"
    await users.UpdatePost(
        users_pb2.UpdatePostRequest(id=post.id, author_username="ann", title=final),
        metadata=ann.metadata,
    )
    stop.set()
    await asyncio.gather(*readers)

    assert await _title(users, post.id) == final
    assert await _titles(users) == [final]


async def test_a_miss_storm_for_one_key_loads_once(
    users: UsersServiceAsyncStub, engine: AsyncEngine
) -> None:
    ann = await sign_up(users, "ann")
    post = await _post(users, ann, "hot")

    with QueryCounter(engine, "post").counting() as queries:
        titles = await asyncio.gather(*(_title(users, post.id) for _ in range(50)))

    assert set(titles) == {"hot"}
    assert queries.count == 1


@pytest.fixture
async def users_via_proxy(
    engine: AsyncEngine, settings: Settings, redis_url: str, workload_tls: Callable[[str], Tls]
) -> AsyncIterator[tuple[UsersServiceAsyncStub, TcpProxy]]:
    """The users server whose Redis is behind a proxy that the test can cut."""
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    proxy = TcpProxy(host, int(port))
    await proxy.open()
    proxied = settings.model_copy(
        update={"redis_url": redis_url.replace(host_port, f"127.0.0.1:{proxy.port}")}
    )
    async with serving(engine, proxied, workload_tls) as users:
        yield users, proxy
    await proxy.cut()


@pytest.mark.one_redis_server
async def test_redis_down_mid_test_reads_still_work_and_writes_wait_for_the_revocations(
    users_via_proxy: tuple[UsersServiceAsyncStub, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    # Reads fall back to the database. A write made for an end user needs auth's revocations,
    # which come from Redis: while they cannot be read it is refused (UNAVAILABLE, nothing
    # changed), as the gateway refuses authenticated requests then, and works once Redis is back.
    users, proxy = users_via_proxy
    ann = await sign_up(users, "ann")
    post = await _post(users, ann, "before")
    assert await _titles(users) == ["before"]
    change = users_pb2.UpdatePostRequest(id=post.id, author_username="ann", title="after")

    await proxy.cut()
    during = (await _titles(users), await _title(users, post.id))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await users.UpdatePost(change, metadata=ann.metadata, timeout=10)
    await proxy.open()
    waits: list[grpc.StatusCode] = []
    async with asyncio.timeout(10):
        while True:
            try:
                await users.UpdatePost(change, metadata=ann.metadata)
                break
            except grpc.aio.AioRpcError as exc:
                waits.append(exc.code())
                await asyncio.sleep(0.1)
    after = await _titles(users)

    assert during == (["before"], "before")
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    assert set(waits) <= {grpc.StatusCode.UNAVAILABLE}
    assert after == ["after"]
    assert any("serving from the database" in r.getMessage() for r in caplog.records)


# The cache on its own, its Redis behind a proxy that can hold every byte: a Redis that takes
# connections but does not answer (a partition, a lost DNS answer while connecting).
_SAME = Codec[dict[str, int]](encode=lambda value: value, decode=lambda value: value)


@contextlib.asynccontextmanager
async def cache_via_proxy(
    redis_url: str, *, rest_s: float
) -> AsyncIterator[tuple[ReadCache, TcpProxy]]:
    host_port = redis_url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.rpartition(":")
    async with TcpProxy(host, int(port)) as proxy:
        client = connect(
            redis_url.replace(host_port, f"127.0.0.1:{proxy.port}"),
            socket_timeout=0.2,
            socket_connect_timeout=0.2,
        )
        try:
            yield ReadCache(client, ttl_s=60, rest_s=rest_s), proxy
        finally:
            await client.aclose()


def _loader() -> tuple[list[int], Callable[[], Any]]:
    loads: list[int] = []

    async def load() -> dict[str, int]:
        loads.append(1)
        return {"loads": len(loads)}

    return loads, load


@pytest.mark.one_redis_server
async def test_a_redis_that_stops_answering_costs_one_read_its_timeout_not_every_read(
    flushed_redis: str,
) -> None:
    async with cache_via_proxy(flushed_redis, rest_s=60) as (cache, proxy):
        loads, load = _loader()
        await cache.read("entry", ["gen"], load, _SAME)
        proxy.delay_s = 30.0

        values = [await cache.read("entry", ["gen"], load, _SAME) for _ in range(5)]

    # Each read is served from the "database"; only the first one asked Redis.
    assert values == [{"loads": n} for n in range(2, 7)]
    assert len(loads) == 6
    assert cache.stats.errors == 1


@pytest.mark.one_redis_server
async def test_an_undelivered_bump_is_not_retried_by_every_read_but_after_the_rest(
    flushed_redis: str,
) -> None:
    async with cache_via_proxy(flushed_redis, rest_s=0.3) as (cache, proxy):
        _, load = _loader()
        await cache.read("entry", ["gen"], load, _SAME)
        proxy.delay_s = 30.0
        await cache.bump("gen")  # the write's invalidation is lost
        during = [await cache.read("entry", ["gen"], load, _SAME) for _ in range(5)]
        errors_during = cache.stats.errors
        proxy.delay_s = 0.0
        await asyncio.sleep(0.4)  # past the rest

        await cache.read("entry", ["gen"], load, _SAME)  # delivers the bump first
        generation = await cache.redis.get("gen")

    assert during == [{"loads": n} for n in range(2, 7)]
    assert errors_during == 1
    assert generation in (b"1", "1")
