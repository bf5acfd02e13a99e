"""Post routes (docs/api.md "Posts"); who may change a post is decided by the users service."""

from __future__ import annotations

from fastapi import APIRouter, status

from gateway.deps import CurrentUser, Superuser, Users, plausible_username
from gateway.documented import errors
from gateway.schemas import (
    Message,
    Page,
    Pages,
    PathInt64,
    PostCreate,
    PostRead,
    PostUpdate,
)

router = APIRouter(prefix="/api/v1", tags=["posts"])


@router.post("/{username}/post", status_code=status.HTTP_201_CREATED, responses=errors(403, 404))
async def create_post(username: str, body: PostCreate, user: CurrentUser, users: Users) -> PostRead:
    """Write a post as `username` (oneself, or anyone for a superuser)."""
    author = await users.get_user(username=plausible_username(username))
    return await users.create_post(user, author.id, body)


@router.get("/{username}/posts", responses=errors(404))
async def read_posts(username: str, users: Users, pages: Pages) -> Page[PostRead]:
    """A user's posts, newest first, a page at a time."""
    data, total = await users.list_posts(
        plausible_username(username), pages.page, pages.items_per_page
    )
    return pages.of(data, total)


@router.get("/{username}/post/{post_id}", responses=errors(404))
async def read_post(username: str, post_id: PathInt64, users: Users) -> PostRead:
    """One post of a user (404 when it is someone else's)."""
    return await users.get_post(post_id, plausible_username(username))


@router.patch("/{username}/post/{post_id}", responses=errors(403, 404))
async def update_post(
    username: str, post_id: PathInt64, body: PostUpdate, user: CurrentUser, users: Users
) -> Message:
    """Change one's own post (or, as a superuser, anyone's)."""
    await users.update_post(user, post_id, plausible_username(username), body)
    return Message(message="Post updated")


@router.delete("/{username}/post/{post_id}", responses=errors(403, 404))
async def delete_post(
    username: str, post_id: PathInt64, user: CurrentUser, users: Users
) -> Message:
    """Delete one's own post (soft)."""
    await users.delete_post(user, post_id, plausible_username(username), hard=False)
    return Message(message="Post deleted")


@router.delete("/{username}/db_post/{post_id}", responses=errors(403, 404))
async def erase_post(username: str, post_id: PathInt64, admin: Superuser, users: Users) -> Message:
    """Remove a post from the database."""
    await users.delete_post(admin, post_id, plausible_username(username), hard=True)
    return Message(message="Post deleted from the database")
