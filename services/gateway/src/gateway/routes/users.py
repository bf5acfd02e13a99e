"""User routes (docs/api.md "Users")."""

from __future__ import annotations

from fastapi import APIRouter, status

from gateway.deps import (
    Auth,
    CurrentUser,
    OptionalUser,
    Superuser,
    Users,
    may_see_email,
    plausible_username,
    require_owner,
)
from gateway.documented import errors
from gateway.schemas import (
    Message,
    Page,
    Pages,
    UserCreate,
    UserRead,
    UserTierRead,
    UserTierUpdate,
    UserUpdate,
)
from meshplate_core.tokens import Claims

router = APIRouter(prefix="/api/v1", tags=["users"])


async def read_user_or_404(
    users: Users, username: str, *, include_deleted: bool = False
) -> UserRead:
    """A user by name; a name no user can have is 404 without a call."""
    return await users.get_user(
        username=plausible_username(username), include_deleted=include_deleted
    )


def _shown(user: UserRead, viewer: Claims | None) -> UserRead:
    return user if may_see_email(viewer, user.id) else user.model_copy(update={"email": None})


@router.post("/user", status_code=status.HTTP_201_CREATED, responses=errors(409))
async def create_user(body: UserCreate, users: Users) -> UserRead:
    """Sign up."""
    return await users.create_user(body)


@router.get("/users")
async def read_users(users: Users, pages: Pages) -> Page[UserRead]:
    """Every user, by id, a page at a time (no e-mail addresses)."""
    data, total = await users.list_users(pages.page, pages.items_per_page)
    return pages.of(data, total)


@router.get("/user/me/")
@router.get("/user/me", include_in_schema=False)
@router.get("/users/me")
async def read_me(user: CurrentUser, users: Users) -> UserRead:
    """The caller's own profile, with e-mail."""
    return await users.get_user(user_id=user.user_id)


@router.get("/user/{username}", responses=errors(404))
async def read_user(username: str, viewer: OptionalUser, users: Users) -> UserRead:
    """A user's profile; the e-mail address only for its owner or a superuser."""
    return _shown(await read_user_or_404(users, username), viewer)


@router.patch("/user/{username}", responses=errors(403, 404, 409))
async def update_user(username: str, body: UserUpdate, user: CurrentUser, users: Users) -> Message:
    """Change one's own profile (or, as a superuser, anyone's)."""
    target = await read_user_or_404(users, username)
    require_owner(user, target.id)
    await users.update_user(user, target.id, body)
    return Message(message="User updated")


@router.delete("/user/{username}", responses=errors(403, 404))
async def delete_user(username: str, user: CurrentUser, users: Users, auth: Auth) -> Message:
    """Delete one's own account (soft); every token of it stops working."""
    target = await read_user_or_404(users, username)
    require_owner(user, target.id)
    await users.delete_user(user, target.id, hard=False)
    await auth.revoke_user(target.id)
    return Message(message="User deleted")


@router.delete("/db_user/{username}", responses=errors(403, 404))
async def erase_user(username: str, admin: Superuser, users: Users, auth: Auth) -> Message:
    """Remove a user (live or soft-deleted) and their data from the database."""
    target = await read_user_or_404(users, username, include_deleted=True)
    await users.delete_user(admin, target.id, hard=True)
    await auth.revoke_user(target.id)
    return Message(message="User deleted from the database")


@router.get("/user/{username}/tier", responses=errors(404))
async def read_user_tier(username: str, viewer: OptionalUser, users: Users) -> UserTierRead:
    """A user with their tier."""
    user = _shown(await read_user_or_404(users, username), viewer)
    tier = await users.get_tier(tier_id=user.tier_id) if user.tier_id is not None else None
    return UserTierRead(
        **user.model_dump(),
        tier_name=tier.name if tier else None,
        tier_created_at=tier.created_at if tier else None,
    )


@router.patch("/user/{username}/tier", responses=errors(403, 404))
async def update_user_tier(
    username: str, body: UserTierUpdate, admin: Superuser, users: Users
) -> Message:
    """Move a user to another tier."""
    target = await read_user_or_404(users, username)
    await users.set_tier(admin, target.id, body.tier_id)
    return Message(message=f"User {username} Tier updated")
