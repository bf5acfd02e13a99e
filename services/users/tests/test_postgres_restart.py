"""The users service through a restart of its PostgreSQL server (a throwaway one of this test's
own): calls made meanwhile fail with UNAVAILABLE (the gateway's 503), never INTERNAL (a 500); the
service serves again by itself once the server is back; every write it acknowledged is there."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator

import grpc
import pytest
from sqlalchemy import text

from meshplate.users.v1 import users_pb2
from meshplate_core.database import migrate, open_engine
from meshplate_core.mtls import Tls
from meshplate_testing.servers import ThrowawayPostgres, recreate_database, running_postgres
from users.server import MIGRATIONS, prepare

from .conftest import serving, settings_for


@pytest.fixture
def postgres() -> Iterator[ThrowawayPostgres]:
    with running_postgres() as server:
        yield server


async def test_a_postgres_restart_is_unavailable_meanwhile_and_loses_no_write(
    postgres: ThrowawayPostgres, flushed_redis: str, workload_tls: Callable[[str], Tls]
) -> None:
    url = await recreate_database(postgres.dsn, "meshplate_test_users_restart")
    settings = settings_for(url, flushed_redis)
    engine = open_engine(url, pool_size=5, application_name="users-tests")
    await migrate(engine, MIGRATIONS)
    await prepare(engine, settings=settings)
    acknowledged: list[str] = []
    failures: Counter[str] = Counter()
    try:
        async with serving(engine, settings, workload_tls) as stub:

            async def sign_up(n: int) -> bool:
                request = users_pb2.CreateUserRequest(
                    name="User",
                    username=f"user{n}",
                    email=f"user{n}@example.com",
                    password="correct horse",
                )
                try:
                    await stub.CreateUser(request, timeout=5)
                except grpc.aio.AioRpcError as exc:
                    failures[exc.code().name] += 1
                    return False
                acknowledged.append(f"user{n}")
                return True

            for n in range(5):
                assert await sign_up(n)
            restarting = asyncio.ensure_future(asyncio.to_thread(postgres.restart))
            n = 5
            while not restarting.done():
                await sign_up(n)
                n += 1
                await asyncio.sleep(0.05)
            await restarting
            # Back by itself: no restart of the service, no call to reconnect.
            async with asyncio.timeout(15):
                while not await sign_up(n):
                    n += 1
                    await asyncio.sleep(0.1)
        async with engine.connect() as conn:
            stored = set(await conn.scalars(text('SELECT username FROM "user"')))
    finally:
        await engine.dispose()

    assert set(failures) <= {"UNAVAILABLE"}, failures
    assert set(acknowledged) <= stored
    assert len(acknowledged) >= 6
