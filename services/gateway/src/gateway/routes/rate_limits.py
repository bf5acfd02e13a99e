"""Rate-limit rule routes (docs/api.md "Tiers and rate-limit rules", the rule part)."""

from __future__ import annotations

from fastapi import APIRouter, status

from gateway.deps import Limits, Superuser, Users
from gateway.documented import errors
from gateway.routes.users import read_user_or_404
from gateway.schemas import (
    Message,
    Page,
    Pages,
    PathInt64,
    PathText,
    RateLimitCreate,
    RateLimitRead,
    RateLimitUpdate,
    UserRateLimitsRead,
)

router = APIRouter(prefix="/api/v1", tags=["rate limits"])


@router.post(
    "/tier/{tier_name}/rate_limit",
    status_code=status.HTTP_201_CREATED,
    responses=errors(403, 404, 409),
)
async def create_rate_limit(
    tier_name: PathText, body: RateLimitCreate, _admin: Superuser, users: Users, limits: Limits
) -> RateLimitRead:
    """Add a rule to a tier."""
    tier = await users.get_tier(name=tier_name)
    return await limits.create_rule(tier.id, body)


@router.get("/tier/{tier_name}/rate_limits", responses=errors(404))
async def read_rate_limits(
    tier_name: PathText, users: Users, limits: Limits, pages: Pages
) -> Page[RateLimitRead]:
    """A tier's rules, by id, a page at a time."""
    tier = await users.get_tier(name=tier_name)
    data, total = await limits.list_rules(tier.id, pages.page, pages.items_per_page)
    return pages.of(data, total)


@router.get("/tier/{tier_name}/rate_limit/{rule_id}", responses=errors(404))
async def read_rate_limit(
    tier_name: PathText, rule_id: PathInt64, users: Users, limits: Limits
) -> RateLimitRead:
    """One rule of a tier."""
    tier = await users.get_tier(name=tier_name)
    return await limits.get_rule(tier.id, rule_id)


@router.patch("/tier/{tier_name}/rate_limit/{rule_id}", responses=errors(403, 404, 409))
async def update_rate_limit(
    tier_name: PathText,
    rule_id: PathInt64,
    body: RateLimitUpdate,
    _admin: Superuser,
    users: Users,
    limits: Limits,
) -> Message:
    """Change a rule; the very next request is governed by it."""
    tier = await users.get_tier(name=tier_name)
    await limits.update_rule(tier.id, rule_id, body)
    return Message(message="Rate Limit updated")


@router.delete("/tier/{tier_name}/rate_limit/{rule_id}", responses=errors(403, 404))
async def delete_rate_limit(
    tier_name: PathText, rule_id: PathInt64, _admin: Superuser, users: Users, limits: Limits
) -> Message:
    """Remove a rule."""
    tier = await users.get_tier(name=tier_name)
    await limits.delete_rule(tier.id, rule_id)
    return Message(message="Rate Limit deleted")


@router.get("/user/{username}/rate_limits", responses=errors(403, 404))
async def read_user_rate_limits(
    username: str, _admin: Superuser, users: Users, limits: Limits
) -> UserRateLimitsRead:
    """A user with every rule of their tier."""
    user = await read_user_or_404(users, username)
    rules = await limits.all_rules(user.tier_id) if user.tier_id is not None else []
    return UserRateLimitsRead(**user.model_dump(), tier_rate_limits=rules)
