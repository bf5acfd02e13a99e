"""Users, credentials, tiers and their events through the real gRPC contract."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from passlib.hash import argon2, bcrypt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate.users.v1 import users_pb2
from meshplate_core.events import Event, UserDeleted, UserRegistered, UserTierChanged
from meshplate_core.redis_client import connect
from meshplate_core.streams import decode
from users.settings import Settings

from .conftest import status_of

if TYPE_CHECKING:
    from meshplate.users.v1.users_pb2_grpc import UsersServiceAsyncStub

PASSWORD = "correct horse"
# The settings' argon2id cost (a row of OWASP's table), and the one used before it.
CURRENT_ARGON2 = "$argon2id$v=19$m=7168,t=5,p=1$"
OLDER_ARGON2 = argon2.using(type="ID", memory_cost=65536, rounds=3, parallelism=4)


async def _sign_up(users: UsersServiceAsyncStub, username: str = "ann") -> users_pb2.User:
    reply = await users.CreateUser(
        users_pb2.CreateUserRequest(
            name="Ann Lee", username=username, email=f"{username}@example.com", password=PASSWORD
        )
    )
    return reply.user


async def _events(
    redis_url: str, model: type[Event], until: Callable[[list[Any]], bool] = bool
) -> list[Any]:
    """The events on the model's stream, once `until` holds for them (or after 2 s)."""
    events: list[Any] = []
    async with connect(redis_url) as client:
        for _ in range(100):
            entries: Any = await client.xrange(model.STREAM)
            events = [decode(model, fields) for _id, fields in entries]
            if until(events):
                break
            await asyncio.sleep(0.02)
    return events


async def test_first_admin_exists_as_a_superuser(users: UsersServiceAsyncStub) -> None:
    reply = await users.GetUser(users_pb2.GetUserRequest(username="root"))

    assert reply.user.is_superuser
    assert reply.user.email == "root@example.com"


async def test_admin_creation_is_idempotent(engine: AsyncEngine, settings: Settings) -> None:
    from users.server import prepare

    await prepare(engine, settings=settings)
    async with engine.connect() as conn:
        count = (await conn.execute(text('SELECT count(*) FROM "user"'))).scalar_one()

    assert count == 1


async def test_credentials_by_username_or_email_in_any_case(users: UsersServiceAsyncStub) -> None:
    ann = await _sign_up(users)

    by_name = await users.VerifyCredentials(
        users_pb2.VerifyCredentialsRequest(username_or_email="ann", password=PASSWORD)
    )
    by_email = await users.VerifyCredentials(
        users_pb2.VerifyCredentialsRequest(username_or_email=" ANN@Example.com ", password=PASSWORD)
    )

    assert by_name.user.id == by_email.user.id == ann.id


@pytest.mark.parametrize(
    ("who", "password"),
    [("ann", "wrong password"), ("nobody", PASSWORD), ("x@y.io", PASSWORD), ("@@", PASSWORD)],
)
async def test_bad_credentials_are_unauthenticated_with_one_message(
    users: UsersServiceAsyncStub, who: str, password: str
) -> None:
    await _sign_up(users)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await users.VerifyCredentials(
            users_pb2.VerifyCredentialsRequest(username_or_email=who, password=password)
        )

    assert err.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert err.value.details() == "Wrong username, email or password."


async def _set_hash(engine: AsyncEngine, user_id: int, hashed: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text('UPDATE "user" SET hashed_password = :h WHERE id = :id'),
            {"h": hashed, "id": user_id},
        )


async def _stored_hash(engine: AsyncEngine, user_id: int) -> str:
    async with engine.connect() as conn:
        result = await conn.execute(
            text('SELECT hashed_password FROM "user" WHERE id = :id'), {"id": user_id}
        )
        return str(result.scalar_one())


@pytest.mark.parametrize(
    "outdated",
    [bcrypt.using(rounds=4).hash(PASSWORD), OLDER_ARGON2.hash(PASSWORD)],
    ids=["bcrypt", "older-argon2"],
)
async def test_an_outdated_hash_is_accepted_and_upgraded_on_login(
    users: UsersServiceAsyncStub, engine: AsyncEngine, outdated: str
) -> None:
    ann = await _sign_up(users)
    await _set_hash(engine, ann.id, outdated)

    await users.VerifyCredentials(
        users_pb2.VerifyCredentialsRequest(username_or_email="ann", password=PASSWORD)
    )

    assert (await _stored_hash(engine, ann.id)).startswith(CURRENT_ARGON2)


async def test_a_wrong_password_leaves_an_outdated_hash_as_it_is(
    users: UsersServiceAsyncStub, engine: AsyncEngine
) -> None:
    ann = await _sign_up(users)
    older = OLDER_ARGON2.hash(PASSWORD)
    await _set_hash(engine, ann.id, older)

    with pytest.raises(grpc.aio.AioRpcError):
        await users.VerifyCredentials(
            users_pb2.VerifyCredentialsRequest(username_or_email="ann", password="wrong")
        )

    assert await _stored_hash(engine, ann.id) == older


async def test_list_users_pages_by_id(users: UsersServiceAsyncStub) -> None:
    for name in ("ann", "bob", "cid"):
        await _sign_up(users, name)

    first = await users.ListUsers(users_pb2.ListUsersRequest(page=1, items_per_page=2))
    second = await users.ListUsers(users_pb2.ListUsersRequest(page=2, items_per_page=2))

    assert [u.username for u in first.users] == ["root", "ann"]
    assert [u.username for u in second.users] == ["bob", "cid"]
    assert first.total_count == second.total_count == 4


@pytest.mark.parametrize(("page", "size"), [(0, 10), (1, 0), (1, 101)])
async def test_out_of_range_pages_are_invalid(
    users: UsersServiceAsyncStub, page: int, size: int
) -> None:
    code = await status_of(
        users.ListUsers(users_pb2.ListUsersRequest(page=page, items_per_page=size))
    )

    assert code is grpc.StatusCode.INVALID_ARGUMENT


async def test_update_changes_only_the_fields_set(users: UsersServiceAsyncStub) -> None:
    ann = await _sign_up(users)

    reply = await users.UpdateUser(
        users_pb2.UpdateUserRequest(
            id=ann.id, username="annie", profile_image_url="https://x.io/a.png"
        )
    )

    assert (reply.user.username, reply.user.name) == ("annie", "Ann Lee")
    assert reply.user.profile_image_url == "https://x.io/a.png"
    assert reply.user.HasField("updated_at")


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("username", "root", grpc.StatusCode.ALREADY_EXISTS),
        ("email", "ROOT@example.com", grpc.StatusCode.ALREADY_EXISTS),
        ("profile_image_url", "javascript:alert(1)", grpc.StatusCode.INVALID_ARGUMENT),
        ("profile_image_url", "ftp://x.io/a", grpc.StatusCode.INVALID_ARGUMENT),
        ("name", "x", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_bad_updates_are_refused(
    users: UsersServiceAsyncStub, field: str, value: str, code: grpc.StatusCode
) -> None:
    ann = await _sign_up(users)

    got = await status_of(
        users.UpdateUser(users_pb2.UpdateUserRequest(id=ann.id, **{field: value}))
    )

    assert got is code


async def test_soft_deleted_user_is_gone_and_announced(
    users: UsersServiceAsyncStub, settings: Settings
) -> None:
    ann = await _sign_up(users)

    await users.DeleteUser(users_pb2.DeleteUserRequest(id=ann.id))

    assert (
        await status_of(users.GetUser(users_pb2.GetUserRequest(id=ann.id)))
        is grpc.StatusCode.NOT_FOUND
    )
    assert (
        await status_of(users.DeleteUser(users_pb2.DeleteUserRequest(id=ann.id)))
        is grpc.StatusCode.NOT_FOUND
    )
    assert (
        await status_of(
            users.VerifyCredentials(
                users_pb2.VerifyCredentialsRequest(username_or_email="ann", password=PASSWORD)
            )
        )
        is grpc.StatusCode.UNAUTHENTICATED
    )
    events = await _events(settings.redis_url, UserDeleted)
    assert [(e.user_id, e.hard) for e in events] == [(ann.id, False)]


async def test_hard_delete_frees_the_username(
    users: UsersServiceAsyncStub, settings: Settings
) -> None:
    ann = await _sign_up(users)

    await users.DeleteUser(users_pb2.DeleteUserRequest(id=ann.id, hard=True))
    again = await _sign_up(users)

    assert again.id != ann.id
    assert [(e.user_id, e.hard) for e in await _events(settings.redis_url, UserDeleted)] == [
        (ann.id, True)
    ]


async def test_sign_up_is_announced_after_commit(
    users: UsersServiceAsyncStub, settings: Settings
) -> None:
    ann = await _sign_up(users)

    events = await _events(settings.redis_url, UserRegistered, lambda found: len(found) == 2)

    assert [(e.user_id, e.username, e.email) for e in events] == [
        (1, "root", "root@example.com"),
        (ann.id, "ann", "ann@example.com"),
    ]


async def test_tiers_lifecycle(users: UsersServiceAsyncStub) -> None:
    gold = (await users.CreateTier(users_pb2.CreateTierRequest(name="gold"))).tier
    renamed = (
        await users.UpdateTier(users_pb2.UpdateTierRequest(id=gold.id, name="platinum"))
    ).tier
    by_name = (await users.GetTier(users_pb2.GetTierRequest(name="platinum"))).tier
    listed = await users.ListTiers(users_pb2.ListTiersRequest(page=1, items_per_page=10))
    await users.DeleteTier(users_pb2.DeleteTierRequest(id=gold.id))

    assert renamed == by_name
    assert [t.name for t in listed.tiers] == ["free", "platinum"]
    assert (
        await status_of(users.GetTier(users_pb2.GetTierRequest(id=gold.id)))
        is grpc.StatusCode.NOT_FOUND
    )


async def test_tier_errors(users: UsersServiceAsyncStub) -> None:
    free = (await users.GetTier(users_pb2.GetTierRequest(name="free"))).tier
    await _sign_up(users)

    taken = await status_of(users.CreateTier(users_pb2.CreateTierRequest(name="free")))
    in_use = await status_of(users.DeleteTier(users_pb2.DeleteTierRequest(id=free.id)))
    blank = await status_of(users.CreateTier(users_pb2.CreateTierRequest(name=" ")))

    assert (taken, in_use, blank) == (
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_tier_change_is_stored_and_announced(
    users: UsersServiceAsyncStub, settings: Settings
) -> None:
    ann = await _sign_up(users)
    gold = (await users.CreateTier(users_pb2.CreateTierRequest(name="gold"))).tier

    moved = (
        await users.SetUserTier(users_pb2.SetUserTierRequest(user_id=ann.id, tier_id=gold.id))
    ).user
    missing = await status_of(
        users.SetUserTier(users_pb2.SetUserTierRequest(user_id=ann.id, tier_id=999))
    )

    assert moved.tier_id == gold.id
    assert missing is grpc.StatusCode.NOT_FOUND
    events = await _events(settings.redis_url, UserTierChanged)
    assert [(e.user_id, e.tier_id) for e in events] == [(ann.id, gold.id)]
