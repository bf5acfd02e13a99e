"""UsersService: translates the gRPC contract to the domain and back, nothing else."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.errors import InvalidArgumentError
from users.domain import User, parse_registration
from users.passwords import PasswordHasher
from users.storage.users import UserStore

Context = grpc.aio.ServicerContext[Any, Any]


def _timestamp(value: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


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


class UsersService(users_pb2_grpc.UsersServiceServicer):
    """The users service; RPCs not overridden here answer UNIMPLEMENTED."""

    def __init__(self, *, users: UserStore, hasher: PasswordHasher, default_tier_name: str) -> None:
        self._users = users
        self._hasher = hasher
        self._default_tier_name = default_tier_name

    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: Context
    ) -> users_pb2.CreateUserResponse:
        registration = parse_registration(
            name=request.name,
            username=request.username,
            email=request.email,
            password=request.password,
        )
        hashed = await self._hasher.hash(registration.password)
        user = await self._users.create(
            registration, hashed_password=hashed, tier_name=self._default_tier_name
        )
        return users_pb2.CreateUserResponse(user=to_proto(user))

    async def GetUser(
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        match request.WhichOneof("lookup"):
            case "id":
                user = await self._users.get_by_id(request.id)
            case "username":
                user = await self._users.get_by_username(request.username)
            case _:
                raise InvalidArgumentError("id or username is required", field="lookup")
        return users_pb2.GetUserResponse(user=to_proto(user))
