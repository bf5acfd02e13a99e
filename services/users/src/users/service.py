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
    Actor,
    Post,
    Tier,
    User,
    parse_changes,
    parse_page,
    parse_post,
    parse_post_changes,
    parse_registration,
    parse_tier_name,
)
from users.posts import Posts

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


def post_to_proto(post: Post) -> users_pb2.Post:
    """The contract's view of a post."""
    message = users_pb2.Post(
        id=post.id,
        uuid=post.uuid,
        title=post.title,
        text=post.text,
        created_by_user_id=post.created_by_user_id,
        created_at=_timestamp(post.created_at),
    )
    if post.media_url is not None:
        message.media_url = post.media_url
    if post.updated_at is not None:
        message.updated_at.CopyFrom(_timestamp(post.updated_at))
    return message


def _actor(request: Any) -> Actor:
    if not request.HasField("actor"):
        raise InvalidArgumentError("actor is required", field="actor")
    return Actor(user_id=request.actor.user_id, is_superuser=request.actor.is_superuser)


def tier_to_proto(tier: Tier) -> users_pb2.Tier:
    """The contract's view of a tier."""
    return users_pb2.Tier(id=tier.id, name=tier.name, created_at=_timestamp(tier.created_at))


class UsersService(users_pb2_grpc.UsersServiceServicer):
    """The users service."""

    def __init__(self, accounts: Accounts, posts: Posts) -> None:
        self._accounts = accounts
        self._posts = posts

    async def CreateUser(
        self, request: users_pb2.CreateUserRequest, context: Context
    ) -> users_pb2.CreateUserResponse:
        registration = parse_registration(
            name=request.name,
            username=request.username,
            email=request.email,
            password=request.password,
        )
        user = await self._accounts.register(registration, time_left_s=context.time_remaining())
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
        user = await self._accounts.check_credentials(
            request.username_or_email, request.password, time_left_s=context.time_remaining()
        )
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

    async def CreatePost(
        self, request: users_pb2.CreatePostRequest, context: Context
    ) -> users_pb2.CreatePostResponse:
        new = parse_post(
            title=request.title, text=request.text, media_url=_optional(request, "media_url")
        )
        post = await self._posts.create(_actor(request), request.author_id, new)
        return users_pb2.CreatePostResponse(post=post_to_proto(post))

    async def GetPost(
        self, request: users_pb2.GetPostRequest, context: Context
    ) -> users_pb2.GetPostResponse:
        post = await self._posts.get(request.id, request.author_username)
        return users_pb2.GetPostResponse(post=post_to_proto(post))

    async def ListPosts(
        self, request: users_pb2.ListPostsRequest, context: Context
    ) -> users_pb2.ListPostsResponse:
        posts, total = await self._posts.page(
            request.author_username, parse_page(request.page, request.items_per_page)
        )
        return users_pb2.ListPostsResponse(posts=map(post_to_proto, posts), total_count=total)

    async def UpdatePost(
        self, request: users_pb2.UpdatePostRequest, context: Context
    ) -> users_pb2.UpdatePostResponse:
        changes = parse_post_changes(
            title=_optional(request, "title"),
            text=_optional(request, "text"),
            media_url=_optional(request, "media_url"),
        )
        post = await self._posts.change(
            _actor(request), request.id, request.author_username, changes
        )
        return users_pb2.UpdatePostResponse(post=post_to_proto(post))

    async def DeletePost(
        self, request: users_pb2.DeletePostRequest, context: Context
    ) -> users_pb2.DeletePostResponse:
        await self._posts.delete(
            _actor(request), request.id, request.author_username, hard=request.hard
        )
        return users_pb2.DeletePostResponse()
