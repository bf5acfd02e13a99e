"""auth under test: its real gRPC server, beside a real users server, on real PostgreSQL/Redis."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from pydantic import SecretStr
from sqlalchemy import text

import auth.server as auth_server
import users.server
from auth.keys import generate_pem
from auth.settings import Settings
from meshplate.auth.v1 import auth_pb2_grpc
from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.database import open_engine
from meshplate_core.grpc_server import start
from meshplate_testing.databases import migrated_database
from meshplate_testing.servers import free_port
from users.settings import Settings as UsersSettings

if TYPE_CHECKING:
    from meshplate.auth.v1.auth_pb2_grpc import AuthServiceAsyncStub

PASSWORD = "correct horse"


@pytest.fixture(scope="session")
def database_urls(make_database: Callable[[str], str]) -> dict[str, str]:
    """Migrated databases for auth and users."""
    return {
        "auth": migrated_database(make_database, "auth", auth_server.MIGRATIONS),
        "users": migrated_database(make_database, "auth_users", users.server.MIGRATIONS),
    }


@pytest.fixture
def keys_pem() -> str:
    """Two keys: the first signs, both are published."""
    return generate_pem() + generate_pem()


@pytest.fixture
def settings(database_urls: dict[str, str], flushed_redis: str, keys_pem: str) -> Settings:
    """auth's settings for a test (the users address is set by the `auth` fixture)."""
    return Settings(
        database_url=database_urls["auth"],
        redis_url=flushed_redis,
        signing_keys=SecretStr(keys_pem),
        # Plaintext between auth and users here; the stack's tests (e2e/) run mutual TLS.
        grpc_plaintext=True,
        _env_file=None,
    )


@pytest.fixture
def users_overrides() -> dict[str, Any]:
    """Settings of the users service beside auth that a test changes (by parametrizing this)."""
    return {}


@pytest.fixture
async def auth(
    settings: Settings,
    database_urls: dict[str, str],
    flushed_redis: str,
    users_overrides: dict[str, Any],
) -> AsyncIterator[AuthServiceAsyncStub]:
    """A stub of a real auth server whose users service is real too, with user "ann"."""
    engines = {
        name: open_engine(url, pool_size=5, application_name="auth-tests")
        for name, url in database_urls.items()
    }
    async with engines["auth"].begin() as conn:
        await conn.execute(text("TRUNCATE refresh_family, revocation, user_revocation, outbox"))
    async with engines["users"].begin() as conn:
        await conn.execute(text('TRUNCATE "user", tier, outbox RESTART IDENTITY CASCADE'))
    users_settings = UsersSettings(
        **{
            "database_url": database_urls["users"],
            "redis_url": flushed_redis,
            "argon2_time_cost": 1,
            "admin_password": SecretStr("admin-password"),
            # auth's own tests need none of users' writes (nor auth's keys for them).
            "grpc_plaintext": True,
            "_env_file": None,
            **users_overrides,
        }
    )
    await users.server.prepare(engines["users"], settings=users_settings)
    users_port = free_port()
    settings.users_addr = f"127.0.0.1:{users_port}"
    async with contextlib.AsyncExitStack() as exits:
        users_register = await exits.enter_async_context(
            users.server.build(engines["users"], settings=users_settings)
        )
        users_running = await start(
            users_register, service_name=users.server.SERVICE_NAME, port=users_port
        )
        auth_register = await exits.enter_async_context(
            auth_server.build(engines["auth"], settings=settings)
        )
        auth_running = await start(auth_register, service_name=auth_server.SERVICE_NAME)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{users_port}")
        await users_pb2_grpc.UsersServiceStub(channel).CreateUser(
            users_pb2.CreateUserRequest(
                name="Ann", username="ann", email="ann@example.com", password=PASSWORD
            )
        )
        await channel.close()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{auth_running.port}") as auth_channel:
            yield auth_pb2_grpc.AuthServiceStub(auth_channel)
        await auth_running.server.stop(grace=None)
        await users_running.server.stop(grace=None)
    for engine in engines.values():
        await engine.dispose()
