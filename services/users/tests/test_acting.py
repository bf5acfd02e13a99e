"""The end user a write is made for comes from the forwarded access token, and the service itself
decides what that user may change."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
import pytest

from auth.domain import Subject
from auth.issuer import TokenIssuer
from auth.keys import generate_pem, parse_keys
from meshplate.users.v1 import users_pb2
from meshplate_core.channels import AUTHORIZATION

from .conftest import person, sign_up, status_of

if TYPE_CHECKING:
    from meshplate.users.v1.users_pb2_grpc import UsersServiceAsyncStub


async def test_users_change_themselves_only_and_superusers_anyone(
    users: UsersServiceAsyncStub,
) -> None:
    ann, bob = await sign_up(users, "ann"), await sign_up(users, "bob")

    own = await users.UpdateUser(
        users_pb2.UpdateUserRequest(id=ann.user_id, name="Annie"), metadata=ann.metadata
    )
    other = await status_of(
        users.UpdateUser(
            users_pb2.UpdateUserRequest(id=ann.user_id, name="Bobbed"), metadata=bob.metadata
        )
    )
    deleted = await status_of(
        users.DeleteUser(users_pb2.DeleteUserRequest(id=ann.user_id), metadata=bob.metadata)
    )
    erased_by_self = await status_of(
        users.DeleteUser(
            users_pb2.DeleteUserRequest(id=ann.user_id, hard=True), metadata=ann.metadata
        )
    )
    by_root = await users.UpdateUser(
        users_pb2.UpdateUserRequest(id=bob.user_id, name="Robert"),
        metadata=person(1, superuser=True).metadata,
    )

    assert own.user.name == "Annie"
    assert other is deleted is erased_by_self is grpc.StatusCode.PERMISSION_DENIED
    assert by_root.user.name == "Robert"


async def test_tiers_are_written_by_superusers_only(users: UsersServiceAsyncStub) -> None:
    ann = await sign_up(users, "ann")

    codes = [
        await status_of(
            users.CreateTier(users_pb2.CreateTierRequest(name="gold"), metadata=ann.metadata)
        ),
        await status_of(
            users.SetUserTier(
                users_pb2.SetUserTierRequest(user_id=ann.user_id, tier_id=1), metadata=ann.metadata
            )
        ),
        await status_of(
            users.UpdateTier(users_pb2.UpdateTierRequest(id=1, name="x"), metadata=ann.metadata)
        ),
        await status_of(users.DeleteTier(users_pb2.DeleteTierRequest(id=1), metadata=ann.metadata)),
    ]

    assert codes == [grpc.StatusCode.PERMISSION_DENIED] * 4
    reply = await users.ListTiers(users_pb2.ListTiersRequest(page=1, items_per_page=10))
    assert [tier.name for tier in reply.tiers] == ["free"]


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer ", "Basic cm9vdDpyb290", "Bearer not-a-jwt"],
    ids=["empty", "no-token", "other-scheme", "garbage"],
)
async def test_a_write_without_a_valid_token_is_unauthenticated(
    users: UsersServiceAsyncStub, authorization: str
) -> None:
    ann = await sign_up(users, "ann")

    code = await status_of(
        users.UpdateUser(
            users_pb2.UpdateUserRequest(id=ann.user_id, name="Xavier"),
            metadata=((AUTHORIZATION, authorization),),
        )
    )

    assert code is grpc.StatusCode.UNAUTHENTICATED


async def test_a_token_signed_by_a_key_auth_never_published_is_refused(
    users: UsersServiceAsyncStub,
) -> None:
    ann = await sign_up(users, "ann")
    # A superuser's token, as whoever holds some other key would make one.
    forger = TokenIssuer(
        parse_keys(generate_pem()),
        issuer="meshplate-auth",
        audience="meshplate",
        access_lifetime=timedelta(hours=1),
        refresh_lifetime=timedelta(hours=1),
    )
    forged = forger.pair(Subject(user_id=1, tier_id=None, is_superuser=True), family_id="f")

    code = await status_of(
        users.DeleteUser(
            users_pb2.DeleteUserRequest(id=ann.user_id, hard=True),
            metadata=((AUTHORIZATION, f"Bearer {forged.access.token}"),),
        )
    )

    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert (await users.GetUser(users_pb2.GetUserRequest(id=ann.user_id))).user.username == "ann"
