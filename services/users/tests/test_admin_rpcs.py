"""What the admin panel asks of users beyond the REST API: searching users, listing the
soft-deleted ones, restoring them, and granting or taking away superuser rights (announced, so
auth revokes the tokens that carry the old rights)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc

from meshplate.users.v1 import users_pb2
from meshplate_core.events import UserRightsChanged
from meshplate_core.redis_client import connect
from meshplate_core.streams import decode
from users.settings import Settings

from .conftest import person, sign_up, status_of

if TYPE_CHECKING:
    from meshplate.users.v1.users_pb2_grpc import UsersServiceAsyncStub

ROOT = person(1, superuser=True)


async def _names(users: UsersServiceAsyncStub, **request: Any) -> list[str]:
    reply = await users.ListUsers(
        users_pb2.ListUsersRequest(page=1, items_per_page=100, **request), metadata=ROOT.metadata
    )
    return [user.username for user in reply.users]


async def test_a_search_matches_name_username_or_email_ignoring_case_and_wildcards(
    users: UsersServiceAsyncStub,
) -> None:
    for name in ("ann", "anna", "bob", "b0b"):
        await sign_up(users, name)

    by_username = await _names(users, query="ANN")
    by_email = await _names(users, query="bob@x.")
    by_name = await _names(users, query="  B0B  ")
    wildcard = await _names(users, query="%")
    underscore = await _names(users, query="_")
    page = await users.ListUsers(users_pb2.ListUsersRequest(page=1, items_per_page=1, query="an"))

    assert by_username == ["ann", "anna"]
    assert by_email == ["bob"]
    assert by_name == ["b0b"]
    assert wildcard == underscore == []
    assert (len(page.users), page.total_count) == (1, 2)


async def test_a_search_longer_than_an_email_address_is_invalid(
    users: UsersServiceAsyncStub,
) -> None:
    code = await status_of(
        users.ListUsers(users_pb2.ListUsersRequest(page=1, items_per_page=10, query="x" * 255))
    )

    assert code is grpc.StatusCode.INVALID_ARGUMENT


async def test_deleted_users_are_listed_for_superusers_and_restored(
    users: UsersServiceAsyncStub,
) -> None:
    ann, bob = await sign_up(users, "ann"), await sign_up(users, "bob")
    await users.DeleteUser(users_pb2.DeleteUserRequest(id=ann.user_id), metadata=ROOT.metadata)

    deleted = await _names(users, deleted=True)
    by_a_user = await status_of(
        users.ListUsers(
            users_pb2.ListUsersRequest(page=1, items_per_page=10, deleted=True),
            metadata=bob.metadata,
        )
    )
    refused = await status_of(
        users.RestoreUser(users_pb2.RestoreUserRequest(id=ann.user_id), metadata=bob.metadata)
    )
    restored = await users.RestoreUser(
        users_pb2.RestoreUserRequest(id=ann.user_id), metadata=ROOT.metadata
    )
    again = await users.RestoreUser(
        users_pb2.RestoreUserRequest(id=ann.user_id), metadata=ROOT.metadata
    )
    missing = await status_of(
        users.RestoreUser(users_pb2.RestoreUserRequest(id=999), metadata=ROOT.metadata)
    )
    found = await users.GetUser(users_pb2.GetUserRequest(username="ann"))

    assert deleted == ["ann"]
    assert by_a_user is refused is grpc.StatusCode.PERMISSION_DENIED
    assert restored.user.username == again.user.username == found.user.username == "ann"
    assert missing is grpc.StatusCode.NOT_FOUND
    assert await _names(users, deleted=True) == []


async def test_superuser_rights_are_granted_and_taken_by_superusers_and_announced(
    users: UsersServiceAsyncStub, settings: Settings
) -> None:
    ann, bob = await sign_up(users, "ann"), await sign_up(users, "bob")

    granted = await users.SetSuperuser(
        users_pb2.SetSuperuserRequest(user_id=ann.user_id, is_superuser=True),
        metadata=ROOT.metadata,
    )
    unchanged = await users.SetSuperuser(
        users_pb2.SetSuperuserRequest(user_id=ann.user_id, is_superuser=True),
        metadata=ROOT.metadata,
    )
    cached = await users.GetUser(users_pb2.GetUserRequest(id=ann.user_id))
    taken = await users.SetSuperuser(
        users_pb2.SetSuperuserRequest(user_id=ann.user_id, is_superuser=False),
        metadata=ROOT.metadata,
    )
    by_a_user = await status_of(
        users.SetSuperuser(
            users_pb2.SetSuperuserRequest(user_id=bob.user_id, is_superuser=True),
            metadata=bob.metadata,
        )
    )
    own = await status_of(
        users.SetSuperuser(
            users_pb2.SetSuperuserRequest(user_id=1, is_superuser=False), metadata=ROOT.metadata
        )
    )
    events = await _rights_changed(settings.redis_url, count=2)

    assert (granted.user.is_superuser, unchanged.user.is_superuser) == (True, True)
    assert cached.user.is_superuser
    assert not taken.user.is_superuser
    assert by_a_user is own is grpc.StatusCode.PERMISSION_DENIED
    # One event per change: granting twice announced once.
    assert [(e.user_id, e.is_superuser) for e in events] == [
        (ann.user_id, True),
        (ann.user_id, False),
    ]


async def _rights_changed(redis_url: str, *, count: int) -> list[UserRightsChanged]:
    events: list[UserRightsChanged] = []
    async with connect(redis_url) as client:
        for _ in range(100):
            entries: Any = await client.xrange(UserRightsChanged.STREAM)
            events = [decode(UserRightsChanged, fields) for _id, fields in entries]
            if len(events) >= count:
                break
            await asyncio.sleep(0.02)
    return events
