"""The users service under test: a migrated PostgreSQL database, the store, a real gRPC server."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.domain import Subject
from auth.issuer import TokenIssuer
from auth.keys import generate_pem, parse_keys
from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.channels import AUTHORIZATION
from meshplate_core.database import open_engine
from meshplate_core.grpc_server import start
from meshplate_core.mtls import Tls
from meshplate_testing.databases import migrated_database
from meshplate_testing.mtls import channel_to, open_to
from users.callers import callers
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
        # The end users' tokens are verified with the keys of `jwks` below, not fetched from auth.
        grpc_plaintext=True,
        _env_file=None,
    )


@dataclass(frozen=True)
class Person:
    """An end user, with the metadata that forwards their access token (as the gateway does)."""

    user_id: int
    metadata: tuple[tuple[str, str], ...]


@functools.cache
def _issuer() -> TokenIssuer:
    """auth's own issuer, with a key of the test session."""
    return TokenIssuer(
        parse_keys(generate_pem()),
        issuer=Settings.model_fields["token_issuer"].default,
        audience=Settings.model_fields["token_audience"].default,
        access_lifetime=timedelta(hours=1),
        refresh_lifetime=timedelta(hours=1),
    )


def person(user_id: int, *, superuser: bool = False) -> Person:
    """User `user_id`, with a fresh access token."""
    pair = _issuer().pair(
        Subject(user_id=user_id, tier_id=None, is_superuser=superuser), family_id="tests"
    )
    return Person(user_id, ((AUTHORIZATION, f"Bearer {pair.access.token}"),))


async def sign_up(users: UsersServiceAsyncStub, username: str) -> Person:
    """A new user (password 12345678) named after `username`, with their token."""
    reply = await users.CreateUser(
        users_pb2.CreateUserRequest(
            name=username.title(), username=username, email=f"{username}@x.io", password="12345678"
        )
    )
    return person(reply.user.id)


async def jwks() -> list[dict[str, str]]:
    """The keys that verify the tokens of `person` (what auth's GetJwks would answer)."""
    return [key.jwk for key in _issuer().keys.published]


class _AsRoot(grpc.aio.UnaryUnaryClientInterceptor):
    """Calls that forward no end user's token forward the first superuser's (user 1)."""

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        metadata = tuple(client_call_details.metadata or ())
        if not any(key == AUTHORIZATION for key, _ in metadata):
            metadata += person(1, superuser=True).metadata
            client_call_details = client_call_details._replace(metadata=metadata)
        return await continuation(client_call_details, request)


@contextlib.asynccontextmanager
async def serving(
    engine: AsyncEngine, settings: Settings, workload_tls: Callable[[str], Tls]
) -> AsyncIterator[UsersServiceAsyncStub]:
    """A stub of a real users server (port 0, real store, mutual TLS) for these settings, called
    as a `tests` workload its table lets call every RPC; the calls are made as the first
    superuser unless they forward another user's token."""
    async with build(engine, settings=settings, keys=jwks) as register:
        running = await start(
            register,
            service_name=SERVICE_NAME,
            tls=workload_tls("users"),
            callers=open_to("tests", callers()),
        )
        async with channel_to(
            running.port, caller=workload_tls("tests"), server="users", interceptors=[_AsRoot()]
        ) as channel:
            yield users_pb2_grpc.UsersServiceStub(channel)
        await running.server.stop(grace=None)


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
async def users(
    engine: AsyncEngine, settings: Settings, workload_tls: Callable[[str], Tls]
) -> AsyncIterator[UsersServiceAsyncStub]:
    """A stub of the real users server, started on port 0 with the real store (see `serving`)."""
    async with serving(engine, settings, workload_tls) as users:
        yield users


async def status_of(call: Any) -> grpc.StatusCode:
    """The status a call fails with (it must fail)."""
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value.code()
