"""auth under test: its real gRPC server, beside a real users server, on real PostgreSQL/Redis."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr
from sqlalchemy import text

import auth.server as auth_server
import users.server
from auth.callers import callers as auth_callers
from auth.keys import generate_pem
from auth.settings import Settings
from meshplate.auth.v1 import auth_pb2_grpc
from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.database import open_engine
from meshplate_core.grpc_server import start
from meshplate_core.mtls import Tls
from meshplate_testing.databases import migrated_database
from meshplate_testing.mtls import channel_to, open_to
from meshplate_testing.servers import free_port
from users.callers import callers as users_callers
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
def settings(
    database_urls: dict[str, str],
    flushed_redis: str,
    keys_pem: str,
    workload_tls: Callable[[str], Tls],
) -> Settings:
    """auth's settings for a test (the users address is set by the `auth` fixture)."""
    return Settings(
        database_url=database_urls["auth"],
        redis_url=flushed_redis,
        signing_keys=SecretStr(keys_pem),
        tls_dir=workload_tls("auth").folder,
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
    workload_tls: Callable[[str], Tls],
) -> AsyncIterator[AuthServiceAsyncStub]:
    """A stub of a real auth server whose users service is real too, with user "ann"; auth
    calls users as the auth workload, the test as a `tests` workload both let call anything
    (every hop mutual TLS)."""
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
            "tls_dir": workload_tls("users").folder,
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
            users_register,
            service_name=users.server.SERVICE_NAME,
            port=users_port,
            tls=workload_tls("users"),
            callers=open_to("tests", users_callers()),
        )
        auth_register = await exits.enter_async_context(
            auth_server.build(engines["auth"], settings=settings)
        )
        auth_running = await start(
            auth_register,
            service_name=auth_server.SERVICE_NAME,
            tls=workload_tls("auth"),
            callers=open_to("tests", auth_callers()),
        )
        tests = workload_tls("tests")
        channel = channel_to(users_port, caller=tests, server="users")
        await users_pb2_grpc.UsersServiceStub(channel).CreateUser(
            users_pb2.CreateUserRequest(
                name="Ann", username="ann", email="ann@example.com", password=PASSWORD
            )
        )
        await channel.close()
        async with channel_to(auth_running.port, caller=tests, server="auth") as auth_channel:
            yield auth_pb2_grpc.AuthServiceStub(auth_channel)
        await auth_running.server.stop(grace=None)
        await users_running.server.stop(grace=None)
    for engine in engines.values():
        await engine.dispose()
