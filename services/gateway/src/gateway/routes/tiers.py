"""Tier routes (docs/api.md "Tiers and rate-limit rules", the tier part)."""

from __future__ import annotations

from fastapi import APIRouter, status

from gateway.deps import Superuser, Users
from gateway.documented import errors
from gateway.schemas import (
    Message,
    Page,
    Pages,
    PathText,
    TierCreate,
    TierRead,
)

router = APIRouter(prefix="/api/v1", tags=["tiers"])


@router.post("/tier", status_code=status.HTTP_201_CREATED, responses=errors(403, 409))
async def create_tier(body: TierCreate, admin: Superuser, users: Users) -> TierRead:
    """Add a tier."""
    return await users.create_tier(admin, body.name)


@router.get("/tiers")
async def read_tiers(users: Users, pages: Pages) -> Page[TierRead]:
    """Every tier, by id, a page at a time."""
    data, total = await users.list_tiers(pages.page, pages.items_per_page)
    return pages.of(data, total)


@router.get("/tier/{name}", responses=errors(404))
async def read_tier(name: PathText, users: Users) -> TierRead:
    """One tier."""
    return await users.get_tier(name=name)


@router.patch("/tier/{name}", responses=errors(403, 404, 409))
async def update_tier(name: PathText, body: TierCreate, admin: Superuser, users: Users) -> Message:
    """Rename a tier."""
    tier = await users.get_tier(name=name)
    await users.rename_tier(admin, tier.id, body.name)
    return Message(message="Tier updated")


@router.delete("/tier/{name}", responses=errors(403, 404, 409))
async def delete_tier(name: PathText, admin: Superuser, users: Users) -> Message:
    """Remove a tier that no user is on."""
    tier = await users.get_tier(name=name)
    await users.delete_tier(admin, tier.id)
    return Message(message="Tier deleted")
