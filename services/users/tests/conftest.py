"""The users service under test: a migrated PostgreSQL database, the store, a real gRPC server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import grpc
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate.users.v1 import users_pb2_grpc
from meshplate_core.database import open_engine
from meshplate_core.grpc_server import start
from meshplate_testing.databases import migrated_database
from users.server import MIGRATIONS, SERVICE_NAME, build, prepare
from users.settings import Settings

if TYPE_CHECKING:
    from meshplate.users.v1.users_pb2_grpc import UsersServiceAsyncStub


def settings_for(database_url: str, redis_url: str) -> Settings:
    """The service's settings for tests: the test database, the real (production) hash cost."""
    return Settings(
        database_url=database_url,
        grpc_port=0,
        redis_url=redis_url,
        admin_username="root",
        admin_email="root@example.com",
        admin_password=SecretStr("root-password"),
        _env_file=None,
    )


@pytest.fixture(scope="session")
def users_database_url(make_database: Callable[[str], str]) -> str:
    """A fresh, migrated database for this session's users tests."""
    return migrated_database(make_database, "users", MIGRATIONS)


@pytest.fixture
def settings(users_database_url: str, flushed_redis: str) -> Settings:
    """Settings pointing at the test database and an empty Redis."""
    return settings_for(users_database_url, flushed_redis)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on an emptied database that holds only the default tier."""
    engine = open_engine(settings.database_url, pool_size=5, application_name="users-tests")
    async with engine.begin() as conn:
        await conn.execute(text('TRUNCATE "user", tier, post, outbox RESTART IDENTITY CASCADE'))
    await prepare(engine, settings=settings)
    yield engine
    await engine.dispose()


@pytest.fixture
async def users(engine: AsyncEngine, settings: Settings) -> AsyncIterator[UsersServiceAsyncStub]:
    """A stub of the real users server, started on port 0 with the real store."""
    async with build(engine, settings=settings) as register:
        running = await start(register, service_name=SERVICE_NAME)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield users_pb2_grpc.UsersServiceStub(channel)
        await running.server.stop(grace=None)
