"""User routes (API.md "Users")."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from gateway.deps import Users
from gateway.schemas import USERNAME_PATTERN, UserCreate, UserRead

router = APIRouter(prefix="/api/v1", tags=["users"])


@router.post("/user", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserCreate, users: Users) -> UserRead:
    """Sign up."""
    return await users.create_user(body)


@router.get("/user/{username}")
async def read_user(username: str, users: Users) -> UserRead:
    """A user's public profile."""
    if not USERNAME_PATTERN.fullmatch(username):
        # No user can have such a name: answer without a call.
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="User not found")
    return await users.get_user(username)
