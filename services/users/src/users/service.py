"""UsersService: translates the gRPC contract to the use cases and back, nothing else."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.errors import InvalidArgumentError
from users.accounts import Accounts
from users.domain import (
    Tier,
    User,
    parse_changes,
    parse_page,
    parse_registration,
    parse_tier_name,
)

Context = grpc.aio.ServicerContext[Any, Any]


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _optional(message: Any, field: str) -> Any:
    return getattr(message, field) if message.HasField(field) else None


def to_proto(user: User) -> users_pb2.User:
    """The contract's view of a user: everything but the password hash."""
    message = users_pb2.User(
        id=user.id,
        uuid=user.uuid,
        name=user.name,
        username=user.username,
        email=user.email,
        is_superuser=user.is_superuser,
        created_at=_timestamp(user.created_at),
    )
    if user.profile_image_url is not None:
        message.profile_image_url = user.profile_image_url
    if user.tier_id is not None:
        message.tier_id = user.tier_id
    if user.updated_at is not None:
        message.updated_at.CopyFrom(_timestamp(user.updated_at))
    return message


def tier_to_proto(tier: Tier) -> users_pb2.Tier:
    """The contract's view of a tier."""
    return users_pb2.Tier(id=tier.id, name=tier.name, created_at=_timestamp(tier.created_at))


class UsersService(users_pb2_grpc.UsersServiceServicer):
    """The users service; the post RPCs answer UNIMPLEMENTED until posts land."""

    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts

    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: Context
    ) -> users_pb2.CreateUserResponse:
        registration = parse_registration(
            name=request.name,
            username=request.username,
            email=request.email,
            password=request.password,
        )
        user = await self._accounts.register(registration)
        return users_pb2.CreateUserResponse(user=to_proto(user))

    async def GetUser(
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        match request.WhichOneof("lookup"):
            case "id":
                user = await self._accounts.user(
                    user_id=request.id, include_deleted=request.include_deleted
                )
            case "username":
                user = await self._accounts.user(
                    username=request.username, include_deleted=request.include_deleted
                )
            case _:
                raise InvalidArgumentError("id or username is required", field="lookup")
        return users_pb2.GetUserResponse(user=to_proto(user))

    async def ListUsers(
        self, request: users_pb2.ListUsersRequest, context: Context
    ) -> users_pb2.ListUsersResponse:
        users, total = await self._accounts.page_of_users(
            parse_page(request.page, request.items_per_page)
        )
        return users_pb2.ListUsersResponse(users=map(to_proto, users), total_count=total)

    async def UpdateUser(
        self, request: users_pb2.UpdateUserRequest, context: Context
    ) -> users_pb2.UpdateUserResponse:
        changes = parse_changes(
            name=_optional(request, "name"),
            username=_optional(request, "username"),
            email=_optional(request, "email"),
            profile_image_url=_optional(request, "profile_image_url"),
        )
        user = await self._accounts.change(request.id, changes)
        return users_pb2.UpdateUserResponse(user=to_proto(user))

    async def DeleteUser(
        self, request: users_pb2.DeleteUserRequest, context: Context
    ) -> users_pb2.DeleteUserResponse:
        await self._accounts.delete(request.id, hard=request.hard)
        return users_pb2.DeleteUserResponse()

    async def VerifyCredentials(
        self, request: users_pb2.VerifyCredentialsRequest, context: Context
    ) -> users_pb2.VerifyCredentialsResponse:
        user = await self._accounts.check_credentials(request.username_or_email, request.password)
        return users_pb2.VerifyCredentialsResponse(user=to_proto(user))

    async def SetUserTier(
        self, request: users_pb2.SetUserTierRequest, context: Context
    ) -> users_pb2.SetUserTierResponse:
        user = await self._accounts.set_tier(request.user_id, request.tier_id)
        return users_pb2.SetUserTierResponse(user=to_proto(user))

    async def CreateTier(
        self, request: users_pb2.CreateTierRequest, context: Context
    ) -> users_pb2.CreateTierResponse:
        tier = await self._accounts.create_tier(parse_tier_name(request.name))
        return users_pb2.CreateTierResponse(tier=tier_to_proto(tier))

    async def GetTier(
        self, request: users_pb2.GetTierRequest, context: Context
    ) -> users_pb2.GetTierResponse:
        match request.WhichOneof("lookup"):
            case "id":
                tier = await self._accounts.tier(tier_id=request.id)
            case "name":
                tier = await self._accounts.tier(name=request.name)
            case _:
                raise InvalidArgumentError("id or name is required", field="lookup")
        return users_pb2.GetTierResponse(tier=tier_to_proto(tier))

    async def ListTiers(
        self, request: users_pb2.ListTiersRequest, context: Context
    ) -> users_pb2.ListTiersResponse:
        tiers, total = await self._accounts.page_of_tiers(
            parse_page(request.page, request.items_per_page)
        )
        return users_pb2.ListTiersResponse(tiers=map(tier_to_proto, tiers), total_count=total)

    async def UpdateTier(
        self, request: users_pb2.UpdateTierRequest, context: Context
    ) -> users_pb2.UpdateTierResponse:
        tier = await self._accounts.rename_tier(request.id, parse_tier_name(request.name))
        return users_pb2.UpdateTierResponse(tier=tier_to_proto(tier))

    async def DeleteTier(
        self, request: users_pb2.DeleteTierRequest, context: Context
    ) -> users_pb2.DeleteTierResponse:
        await self._accounts.delete_tier(request.id)
        return users_pb2.DeleteTierResponse()
