"""The REST contract's bodies (docs/api.md), validated here before any call is made."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
)

# The protos' integer ranges: a number beyond them is refused here (422), before a gRPC request
# that could not hold it is built.
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
PathInt64 = Annotated[int, Path(ge=INT64_MIN, le=INT64_MAX)]
# What no text field may hold: NUL (PostgreSQL's text cannot store it) and lone surrogates (not
# Unicode scalar values: UTF-8, protobuf strings and JSON answers cannot carry them).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value: str) -> str:
    """`value`, if it holds no NUL and no lone surrogate."""
    if _UNSTORABLE.search(value):
        raise ValueError("must be text without NUL characters or lone surrogates")
    return value


Text = Annotated[str, AfterValidator(storable)]
PathText = Annotated[str, Path(), AfterValidator(storable)]
USERNAME_PATTERN = re.compile(r"[a-z0-9]{2,20}")
Username = Annotated[str, StringConstraints(min_length=2, max_length=20, pattern=r"^[a-z0-9]+$")]
Name = Annotated[str, StringConstraints(min_length=2, max_length=30)]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128), AfterValidator(storable)]
HttpUrl = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s/]+\S*$")]
TierName = Annotated[str, StringConstraints(min_length=1, max_length=50)]
T = TypeVar("T")
Algorithm = Literal["sliding_window", "fixed_window"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: object) -> object:
        return storable(value) if isinstance(value, str) else value


class UserCreate(_Input):
    """A sign-up."""

    name: Name = Field(examples=["User Userson"])
    username: Username = Field(examples=["userson"])
    email: EmailStr = Field(examples=["user.userson@example.com"])
    password: Password = Field(examples=["Str1ngst!"])


class UserUpdate(_Input):
    """A profile change: any of these fields."""

    name: Name | None = None
    username: Username | None = None
    email: EmailStr | None = None
    profile_image_url: HttpUrl | None = None


class UserTierUpdate(_Input):
    """Moving a user to another tier."""

    tier_id: Int64


class TierCreate(_Input):
    """A new tier."""

    name: TierName


class PostCreate(_Input):
    """A new post."""

    title: Annotated[str, StringConstraints(min_length=2, max_length=30)] = Field(
        examples=["This is my post"]
    )
    text: Annotated[str, StringConstraints(min_length=1, max_length=63206)] = Field(
        examples=["This is the content of my post."]
    )
    media_url: HttpUrl | None = None


class PostUpdate(_Input):
    """A post change: any of these fields."""

    title: Annotated[str, StringConstraints(min_length=2, max_length=30)] | None = None
    text: Annotated[str, StringConstraints(min_length=1, max_length=63206)] | None = None
    media_url: HttpUrl | None = None


class PostRead(BaseModel):
    """A post."""

    id: int
    title: str
    text: str
    media_url: str | None
    created_by_user_id: int
    created_at: datetime


class RateLimitCreate(_Input):
    """A rule: `limit` requests per `period` seconds on `path` (a template, or `*` for the tier's
    default), for the tier in the path."""

    path: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        examples=["/api/v1/tasks/task"]
    )
    limit: int = Field(ge=1, le=INT64_MAX, examples=[5])
    period: int = Field(ge=1, le=INT64_MAX, examples=[86400])
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    # Sliding (default: never more than `limit` in any `period`) or fixed windows aligned to
    # multiples of `period` since the epoch (quotas reset at known instants).
    algorithm: Algorithm | None = None


class RateLimitUpdate(_Input):
    """A rule change: any of the create fields."""

    path: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    limit: int | None = Field(default=None, ge=1, le=INT64_MAX)
    period: int | None = Field(default=None, ge=1, le=INT64_MAX)
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    algorithm: Algorithm | None = None


class RateLimitRead(BaseModel):
    """A rule."""

    id: int
    tier_id: int
    name: str
    path: str
    limit: int
    period: int
    algorithm: Algorithm


class UserRead(BaseModel):
    """A user as clients see it; `email` is present only for its owner or a superuser."""

    id: int
    name: str
    username: str
    email: str | None = Field(default=None, exclude_if=lambda value: value is None)
    profile_image_url: str | None
    tier_id: int | None


class UserTierRead(UserRead):
    """A user with their tier (null fields when they have none)."""

    tier_name: str | None
    tier_created_at: datetime | None


class UserRateLimitsRead(UserRead):
    """A user with the rules of their tier."""

    tier_rate_limits: list[RateLimitRead]


class TierRead(BaseModel):
    """A tier."""

    id: int
    name: str
    created_at: datetime


class Token(BaseModel):
    """An access token for `Authorization: Bearer`."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"


class Message(BaseModel):
    """A confirmation."""

    message: str


class Page(BaseModel, Generic[T]):
    """One page of a list, in a stable order."""

    data: list[T]
    total_count: int
    has_more: bool
    page: int
    items_per_page: int


class PageParams(BaseModel):
    """Which page: `page` >= 1, `items_per_page` 1..100 (the query parameters of a list)."""

    page: Annotated[int, Field(ge=1, le=INT32_MAX)] = 1
    items_per_page: Annotated[int, Field(ge=1, le=100)] = 10

    def of(self, data: list[T], total_count: int) -> Page[T]:
        """The page answer for these items."""
        return Page[T](
            data=data,
            total_count=total_count,
            has_more=self.page * self.items_per_page < total_count,
            page=self.page,
            items_per_page=self.items_per_page,
        )


# A list route's pagination, read from the query as one model (no dependency to solve).
Pages = Annotated[PageParams, Query()]
