"""UsersService: translates the gRPC contract to the use cases and back, nothing else.

The writes made for an end user act as the user of the access token the caller forwards in the
`authorization` metadata, verified with auth's published keys and checked against auth's
revocations (meshplate_core.authenticator, as the gateway checks it), never as a user a request
field names."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.authenticator import Authenticator
from meshplate_core.channels import AUTHORIZATION
from meshplate_core.errors import InvalidArgumentError, UnauthenticatedError
from meshplate_core.interceptors import Context
from users.accounts import Accounts
from users.domain.actors import Actor
from users.domain.pages import parse_page
from users.domain.posts import Post, parse_post, parse_post_changes
from users.domain.tiers import Tier, parse_tier_name
from users.domain.users import User, parse_changes, parse_registration, parse_search
from users.posts import Posts

# How long a write waits for the revocation list at start (replayed in milliseconds) before it is
# refused as UNAVAILABLE.
_SYNC_WAIT_S = 2.0


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


def _bearer(context: Context) -> str:
    """The end user's access token the caller forwarded (`authorization: Bearer <token>`)."""
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token:
                return token
    raise UnauthenticatedError(
        "this write needs the end user's access token (authorization: Bearer <token>)"
    )


def tier_to_proto(tier: Tier) -> users_pb2.Tier:
    """The contract's view of a tier."""
    return users_pb2.Tier(id=tier.id, name=tier.name, created_at=_timestamp(tier.created_at))


class UsersService(users_pb2_grpc.UsersServiceServicer):
    """The users service."""

    def __init__(self, accounts: Accounts, posts: Posts, tokens: Authenticator) -> None:
        self._accounts = accounts
        self._posts = posts
        self._tokens = tokens

    async def _actor(self, context: Context) -> Actor:
        """The end user the call is made for: the one its forwarded access token names."""
        claims = await self._tokens.authenticate(_bearer(context), wait_s=_SYNC_WAIT_S)
        return Actor(user_id=claims.user_id, is_superuser=claims.is_superuser)

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
        search = parse_search(request.query, deleted=request.deleted)
        # Only a listing of deleted users needs to know who asks.
        actor = await self._actor(context) if search.deleted else None
        users, total = await self._accounts.page_of_users(
            parse_page(request.page, request.items_per_page), search, actor
        )
        return users_pb2.ListUsersResponse(users=map(to_proto, users), total_count=total)

    async def UpdateUser(
        self, request: users_pb2.UpdateUserRequest, context: Context
    ) -> users_pb2.UpdateUserResponse:
        actor = await self._actor(context)
        changes = parse_changes(
            name=_optional(request, "name"),
            username=_optional(request, "username"),
            email=_optional(request, "email"),
            profile_image_url=_optional(request, "profile_image_url"),
        )
        user = await self._accounts.change(actor, request.id, changes)
        return users_pb2.UpdateUserResponse(user=to_proto(user))

    async def DeleteUser(
        self, request: users_pb2.DeleteUserRequest, context: Context
    ) -> users_pb2.DeleteUserResponse:
        actor = await self._actor(context)
        await self._accounts.delete(actor, request.id, hard=request.hard)
        return users_pb2.DeleteUserResponse()

    async def RestoreUser(
        self, request: users_pb2.RestoreUserRequest, context: Context
    ) -> users_pb2.RestoreUserResponse:
        actor = await self._actor(context)
        user = await self._accounts.restore(actor, request.id)
        return users_pb2.RestoreUserResponse(user=to_proto(user))

    async def SetSuperuser(
        self, request: users_pb2.SetSuperuserRequest, context: Context
    ) -> users_pb2.SetSuperuserResponse:
        actor = await self._actor(context)
        user = await self._accounts.set_superuser(actor, request.user_id, request.is_superuser)
        return users_pb2.SetSuperuserResponse(user=to_proto(user))

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
        actor = await self._actor(context)
        user = await self._accounts.set_tier(actor, request.user_id, request.tier_id)
        return users_pb2.SetUserTierResponse(user=to_proto(user))

    async def CreateTier(
        self, request: users_pb2.CreateTierRequest, context: Context
    ) -> users_pb2.CreateTierResponse:
        actor = await self._actor(context)
        tier = await self._accounts.create_tier(actor, parse_tier_name(request.name))
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
        actor = await self._actor(context)
        tier = await self._accounts.rename_tier(actor, request.id, parse_tier_name(request.name))
        return users_pb2.UpdateTierResponse(tier=tier_to_proto(tier))

    async def DeleteTier(
        self, request: users_pb2.DeleteTierRequest, context: Context
    ) -> users_pb2.DeleteTierResponse:
        actor = await self._actor(context)
        await self._accounts.delete_tier(actor, request.id)
        return users_pb2.DeleteTierResponse()

    async def CreatePost(
        self, request: users_pb2.CreatePostRequest, context: Context
    ) -> users_pb2.CreatePostResponse:
        actor = await self._actor(context)
        new = parse_post(
            title=request.title, text=request.text, media_url=_optional(request, "media_url")
        )
        post = await self._posts.create(actor, request.author_id, new)
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
        actor = await self._actor(context)
        changes = parse_post_changes(
            title=_optional(request, "title"),
            text=_optional(request, "text"),
            media_url=_optional(request, "media_url"),
        )
        post = await self._posts.change(actor, request.id, request.author_username, changes)
        return users_pb2.UpdatePostResponse(post=post_to_proto(post))

    async def DeletePost(
        self, request: users_pb2.DeletePostRequest, context: Context
    ) -> users_pb2.DeletePostResponse:
        actor = await self._actor(context)
        await self._posts.delete(actor, request.id, request.author_username, hard=request.hard)
        return users_pb2.DeletePostResponse()
