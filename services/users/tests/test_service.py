from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate.users.v1 import users_pb2
from meshplate_core.mtls import Tls
from users.settings import Settings

from .conftest import serving

if TYPE_CHECKING:
    from meshplate.users.v1.users_pb2_grpc import UsersServiceAsyncStub


def _sign_up(**overrides: str) -> users_pb2.CreateUserRequest:
    fields = {
        "name": "Ann Lee",
        "username": "ann",
        "email": "Ann@Example.com",
        "password": "correct horse",
    }
    return users_pb2.CreateUserRequest(**{**fields, **overrides})


async def test_create_user_returns_the_stored_user(users: UsersServiceAsyncStub) -> None:
    reply = await users.CreateUser(_sign_up())

    assert reply.user.id > 0
    assert (reply.user.username, reply.user.email) == ("ann", "ann@example.com")
    assert reply.user.HasField("tier_id")
    assert not reply.user.is_superuser
    assert len(reply.user.uuid) == 36


async def test_password_hash_is_argon2id_and_never_sent(
    users: UsersServiceAsyncStub, engine: AsyncEngine
) -> None:
    reply = await users.CreateUser(_sign_up())
    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text('SELECT hashed_password FROM "user" WHERE id = :id'), {"id": reply.user.id}
            )
        ).scalar_one()

    assert stored.startswith("$argon2id$")
    assert "correct horse" not in str(reply)
    assert stored not in str(reply)


async def test_get_user_by_username_and_by_id(users: UsersServiceAsyncStub) -> None:
    created = (await users.CreateUser(_sign_up())).user

    by_name = await users.GetUser(users_pb2.GetUserRequest(username="ann"))
    by_id = await users.GetUser(users_pb2.GetUserRequest(id=created.id))

    assert by_name.user == by_id.user == created


async def test_unknown_user_is_not_found(users: UsersServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.GetUser(users_pb2.GetUserRequest(username="nobody"))

    assert err.value.code() is grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "User not found"


async def test_lookup_without_a_key_is_invalid(users: UsersServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.GetUser(users_pb2.GetUserRequest())

    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"username": "ann"}, "Username not available"),
        ({"email": "ANN@example.com"}, "Email is already registered"),
    ],
)
async def test_taken_username_or_email_already_exists(
    users: UsersServiceAsyncStub, overrides: dict[str, str], message: str
) -> None:
    await users.CreateUser(_sign_up())
    other = {"username": "bob", "email": "bob@example.com", **overrides}

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.CreateUser(_sign_up(**other))

    assert err.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert err.value.details() == message


async def test_concurrent_sign_ups_with_one_email_create_one_user(
    users: UsersServiceAsyncStub,
) -> None:
    attempts = [_sign_up(username=f"user{i}", email="same@example.com") for i in range(6)]

    results = await asyncio.gather(*(users.CreateUser(a) for a in attempts), return_exceptions=True)

    errors = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(results) - len(errors) == 1
    assert {e.code() for e in errors} == {grpc.StatusCode.ALREADY_EXISTS}


async def test_invalid_field_is_named_in_the_trailers(users: UsersServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.CreateUser(_sign_up(username="Not Valid"))

    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert ("field", "username") in tuple(err.value.trailing_metadata() or ())


async def test_sixteen_sign_ups_at_once_all_succeed(users: UsersServiceAsyncStub) -> None:
    requests = [_sign_up(username=f"user{i}", email=f"user{i}@example.com") for i in range(16)]

    replies = await asyncio.gather(*(users.CreateUser(r) for r in requests))

    assert sorted(r.user.username for r in replies) == sorted(r.username for r in requests)


async def test_a_flood_of_checks_beyond_the_deadline_is_refused_at_once_with_a_retry_time(
    engine: AsyncEngine, settings: Settings, workload_tls: Callable[[str], Tls]
) -> None:
    # One check at a time, each dearer than in production: of 64 checks with two seconds to
    # live, those that can be done in half of that are, the rest are refused.
    slow_and_single = settings.model_copy(
        update={"argon2_time_cost": 12, "password_concurrency": 1}
    )
    async with serving(engine, slow_and_single, workload_tls) as users:
        await users.CreateUser(_sign_up())
        check = users_pb2.VerifyCredentialsRequest(
            username_or_email="ann", password="correct horse"
        )
        answers = await asyncio.gather(
            *(users.VerifyCredentials(check, timeout=2) for _ in range(64)),
            return_exceptions=True,
        )

    refused = [a for a in answers if isinstance(a, grpc.aio.AioRpcError)]
    done = [a for a in answers if isinstance(a, users_pb2.VerifyCredentialsResponse)]
    assert refused
    assert done
    assert len(refused) + len(done) == 64
    assert {(e.code(), e.details()) for e in refused} == {
        (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "Too many password checks at once; try again shortly.",
        )
    }
    assert all(int(dict(e.trailing_metadata() or ())["retry-after"]) >= 1 for e in refused)
    assert {a.user.username for a in done} == {"ann"}
