"""Calls to the users service: users and tiers."""

from __future__ import annotations

from datetime import UTC

import grpc

from gateway.reads import ReadModel
from gateway.schemas import (
    PostCreate,
    PostRead,
    PostUpdate,
    TierRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.channels import Caller
from meshplate_core.events import post_key, user_key, username_key
from meshplate_core.tokens import Claims


def to_user_read(user: users_pb2.User, *, with_email: bool) -> UserRead:
    """The REST view of a user; the e-mail address only when the caller may see it."""
    return UserRead(
        id=user.id,
        name=user.name,
        username=user.username,
        email=user.email if with_email else None,
        profile_image_url=user.profile_image_url if user.HasField("profile_image_url") else None,
        tier_id=user.tier_id if user.HasField("tier_id") else None,
    )


def to_tier_read(tier: users_pb2.Tier) -> TierRead:
    """The REST view of a tier."""
    return TierRead(id=tier.id, name=tier.name, created_at=tier.created_at.ToDatetime(tzinfo=UTC))


def to_post_read(post: users_pb2.Post) -> PostRead:
    """The REST view of a post."""
    return PostRead(
        id=post.id,
        title=post.title,
        text=post.text,
        media_url=post.media_url if post.HasField("media_url") else None,
        created_by_user_id=post.created_by_user_id,
        created_at=post.created_at.ToDatetime(tzinfo=UTC),
    )


class UsersClient:
    """Calls to the users service; reads of live users and of posts are answered from the read
    model (gateway.reads) when it holds a current copy."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float, reads: ReadModel) -> None:
        self._stub = users_pb2_grpc.UsersServiceStub(channel)
        self._call = Caller(timeout_s=timeout_s)
        self._reads = reads

    async def create_user(self, body: UserCreate) -> UserRead:
        """Register a user; the answer shows the e-mail address to its owner."""
        reply = await self._call(
            self._stub.CreateUser,
            users_pb2.CreateUserRequest(
                name=body.name, username=body.username, email=body.email, password=body.password
            ),
        )
        return to_user_read(reply.user, with_email=True)

    async def get_user(
        self,
        *,
        username: str | None = None,
        user_id: int | None = None,
        include_deleted: bool = False,
    ) -> UserRead:
        """The live user with this username or id, e-mail included (routes decide who sees it)."""
        if user_id is not None:
            request = users_pb2.GetUserRequest(id=user_id, include_deleted=include_deleted)
            key = user_key(user_id)
        else:
            assert username is not None
            request = users_pb2.GetUserRequest(username=username, include_deleted=include_deleted)
            key = username_key(username)

        async def load() -> UserRead:
            reply = await self._call(self._stub.GetUser, request)
            return to_user_read(reply.user, with_email=True)

        if include_deleted:
            return await load()
        return await self._reads.read(key, (key,), load)

    async def account(self, user_id: int, *, include_deleted: bool = False) -> users_pb2.User:
        """A user's whole record as users holds it now (superuser flag included), for the admin
        panel: never a copy of the read model."""
        reply = await self._call(
            self._stub.GetUser,
            users_pb2.GetUserRequest(id=user_id, include_deleted=include_deleted),
        )
        return reply.user

    async def accounts(
        self, user: Claims, page: int, size: int, *, query: str = "", deleted: bool = False
    ) -> tuple[list[users_pb2.User], int]:
        """One page of whole records (live users, or soft-deleted ones) matching `query`, and
        their total, as `user` (a superuser, for the admin panel)."""
        reply = await self._call(
            self._stub.ListUsers,
            users_pb2.ListUsersRequest(
                page=page, items_per_page=size, query=query, deleted=deleted
            ),
            user=user,
        )
        return list(reply.users), reply.total_count

    async def restore_user(self, user: Claims, user_id: int) -> None:
        """Make a soft-deleted user live again, as `user`."""
        await self._call(
            self._stub.RestoreUser, users_pb2.RestoreUserRequest(id=user_id), user=user
        )

    async def set_superuser(self, user: Claims, user_id: int, flag: bool) -> None:
        """Grant or take away superuser rights, as `user`."""
        await self._call(
            self._stub.SetSuperuser,
            users_pb2.SetSuperuserRequest(user_id=user_id, is_superuser=flag),
            user=user,
        )

    async def list_users(self, page: int, size: int) -> tuple[list[UserRead], int]:
        """One page of users (no e-mail addresses) and the total."""
        reply = await self._call(
            self._stub.ListUsers,
            users_pb2.ListUsersRequest(page=page, items_per_page=size),
        )
        return [to_user_read(u, with_email=False) for u in reply.users], reply.total_count

    async def update_user(self, user: Claims, user_id: int, body: UserUpdate) -> None:
        """Change the fields the body sets, as `user` (the service checks they may)."""
        await self._call(
            self._stub.UpdateUser,
            users_pb2.UpdateUserRequest(id=user_id, **body.model_dump(exclude_none=True)),
            user=user,
        )

    async def delete_user(self, user: Claims, user_id: int, *, hard: bool) -> None:
        """Soft-delete a user, or remove them with their data, as `user`."""
        await self._call(
            self._stub.DeleteUser,
            users_pb2.DeleteUserRequest(id=user_id, hard=hard),
            user=user,
        )

    async def set_tier(self, user: Claims, user_id: int, tier_id: int) -> None:
        """Move a user to a tier, as `user`."""
        await self._call(
            self._stub.SetUserTier,
            users_pb2.SetUserTierRequest(user_id=user_id, tier_id=tier_id),
            user=user,
        )

    async def create_tier(self, user: Claims, name: str) -> TierRead:
        """A new tier, made by `user`."""
        reply = await self._call(
            self._stub.CreateTier,
            users_pb2.CreateTierRequest(name=name),
            user=user,
        )
        return to_tier_read(reply.tier)

    async def get_tier(self, *, name: str | None = None, tier_id: int | None = None) -> TierRead:
        """The tier with this name or id."""
        if tier_id is not None:
            request = users_pb2.GetTierRequest(id=tier_id)
        else:
            assert name is not None
            request = users_pb2.GetTierRequest(name=name)
        reply = await self._call(self._stub.GetTier, request)
        return to_tier_read(reply.tier)

    async def list_tiers(self, page: int, size: int) -> tuple[list[TierRead], int]:
        """One page of tiers and the total."""
        reply = await self._call(
            self._stub.ListTiers,
            users_pb2.ListTiersRequest(page=page, items_per_page=size),
        )
        return [to_tier_read(t) for t in reply.tiers], reply.total_count

    async def rename_tier(self, user: Claims, tier_id: int, name: str) -> None:
        """Rename a tier, as `user`."""
        await self._call(
            self._stub.UpdateTier,
            users_pb2.UpdateTierRequest(id=tier_id, name=name),
            user=user,
        )

    async def delete_tier(self, user: Claims, tier_id: int) -> None:
        """Remove a tier no user is on, as `user`."""
        await self._call(
            self._stub.DeleteTier,
            users_pb2.DeleteTierRequest(id=tier_id),
            user=user,
        )

    async def create_post(self, user: Claims, author_id: int, body: PostCreate) -> PostRead:
        """A new post by `author_id`, written by `user` (the service checks they may)."""
        reply = await self._call(
            self._stub.CreatePost,
            users_pb2.CreatePostRequest(author_id=author_id, **body.model_dump(exclude_none=True)),
            user=user,
        )
        return to_post_read(reply.post)

    async def get_post(self, post_id: int, author_username: str) -> PostRead:
        """A live post of this author."""

        async def load() -> PostRead:
            reply = await self._call(
                self._stub.GetPost,
                users_pb2.GetPostRequest(id=post_id, author_username=author_username),
            )
            return to_post_read(reply.post)

        depends_on = (username_key(author_username), post_key(post_id))
        return await self._reads.read(f"post:{author_username}:{post_id}", depends_on, load)

    async def list_posts(
        self, author_username: str, page: int, size: int
    ) -> tuple[list[PostRead], int]:
        """One page of an author's posts, newest first, and the total."""

        async def load() -> tuple[list[PostRead], int]:
            reply = await self._call(
                self._stub.ListPosts,
                users_pb2.ListPostsRequest(
                    author_username=author_username, page=page, items_per_page=size
                ),
            )
            return [to_post_read(p) for p in reply.posts], reply.total_count

        key = f"posts:{author_username}:{page}:{size}"
        return await self._reads.read(key, (username_key(author_username),), load)

    async def update_post(
        self, user: Claims, post_id: int, author_username: str, body: PostUpdate
    ) -> None:
        """Change a post (the service checks `user` may)."""
        await self._call(
            self._stub.UpdatePost,
            users_pb2.UpdatePostRequest(
                id=post_id,
                author_username=author_username,
                **body.model_dump(exclude_none=True),
            ),
            user=user,
        )

    async def delete_post(
        self, user: Claims, post_id: int, author_username: str, *, hard: bool
    ) -> None:
        """Soft-delete (or, for a superuser, remove) a post."""
        await self._call(
            self._stub.DeletePost,
            users_pb2.DeletePostRequest(id=post_id, author_username=author_username, hard=hard),
            user=user,
        )
