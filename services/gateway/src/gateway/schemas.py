"""The REST contract's bodies (API.md), validated here before any call is made."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints

USERNAME_PATTERN = re.compile(r"[a-z0-9]{2,20}")
Username = Annotated[str, StringConstraints(min_length=2, max_length=20, pattern=r"^[a-z0-9]+$")]


class UserCreate(BaseModel):
    """A sign-up."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=2, max_length=30)] = Field(
        examples=["User Userson"]
    )
    username: Username = Field(examples=["userson"])
    email: EmailStr = Field(examples=["user.userson@example.com"])
    password: Annotated[str, StringConstraints(min_length=8, max_length=128)] = Field(
        examples=["Str1ngst!"]
    )


class UserRead(BaseModel):
    """A user as clients see it; `email` is present only for its owner or a superuser."""

    id: int
    name: str
    username: str
    email: str | None = Field(default=None, exclude_if=lambda value: value is None)
    profile_image_url: str | None
    tier_id: int | None
