"""ratelimit under test: a migrated database, real Redis, the real gRPC server on port 0."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate.ratelimit.v1 import ratelimit_pb2_grpc
from meshplate_core.database import open_engine
from meshplate_core.grpc_server import start
from meshplate_core.mtls import Tls
from meshplate_core.redis_client import RedisClient, connect
from meshplate_testing.databases import migrated_database
from meshplate_testing.mtls import channel_to, open_to
from ratelimit.callers import callers
from ratelimit.server import MIGRATIONS, SERVICE_NAME, build
from ratelimit.settings import Settings

if TYPE_CHECKING:
    from meshplate.ratelimit.v1.ratelimit_pb2_grpc import RateLimitServiceAsyncStub


@pytest.fixture(scope="session")
def ratelimit_database_url(make_database: Callable[[str], str]) -> str:
    """A fresh, migrated database for this session's ratelimit tests."""
    return migrated_database(make_database, "ratelimit", MIGRATIONS)


@pytest.fixture
def settings(ratelimit_database_url: str, flushed_redis: str) -> Settings:
    """Settings on the test database and an empty Redis; default 10 per hour. A slow Redis
    answer on a loaded machine must not pass for an outage (failing open would admit one more),
    so the Redis timeout is 5 s instead of 0.5."""
    return Settings(
        database_url=ratelimit_database_url,
        redis_url=flushed_redis,
        redis_timeout_s=5,
        _env_file=None,
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on an emptied database."""
    engine = open_engine(settings.database_url, pool_size=5, application_name="ratelimit-tests")
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE rule RESTART IDENTITY"))
    yield engine
    await engine.dispose()


StubFactory = Callable[..., Any]


@pytest.fixture
async def start_server(
    engine: AsyncEngine, settings: Settings, workload_tls: Callable[[str], Tls]
) -> AsyncIterator[Callable[..., Any]]:
    """Starts ratelimit servers (settings overridable, mutual TLS, every RPC open to the
    `tests` workload); returns channels to them, as that workload."""
    exits = contextlib.AsyncExitStack()

    async def make(**overrides: Any) -> grpc.aio.Channel:
        register = await exits.enter_async_context(
            build(engine, settings=settings.model_copy(update=overrides))
        )
        running = await start(
            register,
            service_name=SERVICE_NAME,
            tls=workload_tls("ratelimit"),
            callers=open_to("tests", callers()),
        )
        exits.push_async_callback(running.server.stop, None)
        channel = channel_to(running.port, caller=workload_tls("tests"), server="ratelimit")
        exits.push_async_callback(channel.close)
        return channel

    async with exits:
        yield make


@pytest.fixture
def start_ratelimit(start_server: Callable[..., Any]) -> Callable[..., Any]:
    """Starts ratelimit servers (settings overridable); returns their stubs."""

    async def make(**overrides: Any) -> RateLimitServiceAsyncStub:
        stub: RateLimitServiceAsyncStub = ratelimit_pb2_grpc.RateLimitServiceStub(
            await start_server(**overrides)
        )
        return stub

    return make


@pytest.fixture
async def ratelimit(start_ratelimit: Callable[..., Any]) -> RateLimitServiceAsyncStub:
    """One ratelimit server with the default settings."""
    stub: RateLimitServiceAsyncStub = await start_ratelimit()
    return stub


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[RedisClient]:
    """A client of the test Redis."""
    client = connect(settings.redis_url)
    yield client
    await client.aclose()
