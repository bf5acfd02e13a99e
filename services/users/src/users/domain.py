"""Users and tiers: what they are, the rules their fields obey, and the errors of this service."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from meshplate_core.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)

USERNAME_PATTERN = re.compile(r"[a-z0-9]{2,20}")
# Path segments of the REST API that a username in the same place would shadow.
RESERVED_USERNAMES = frozenset({"me", "tasks", "tier", "tiers", "user", "users"})
NAME_LENGTH = (2, 30)
PASSWORD_LENGTH = (8, 128)
TIER_NAME_LENGTH = (1, 50)
TITLE_LENGTH = (2, 30)
TEXT_LENGTH = (1, 63206)
URL_MAX_LENGTH = 2048
MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class User:
    """A user as stored; `hashed_password` never leaves this service."""

    id: int
    uuid: str
    name: str
    username: str
    email: str
    hashed_password: str
    profile_image_url: str | None
    tier_id: int | None
    is_superuser: bool
    created_at: datetime
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class Tier:
    """A named class of users that rate-limit rules refer to."""

    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Registration:
    """A validated sign-up: every field obeys the rules of the REST contract."""

    name: str
    username: str
    email: str
    password: str


@dataclass(frozen=True, slots=True)
class UserChanges:
    """A validated profile update: only the fields that are set change."""

    name: str | None = None
    username: str | None = None
    email: str | None = None
    profile_image_url: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The fields to write."""
        fields = {
            "name": self.name,
            "username": self.username,
            "email": self.email,
            "profile_image_url": self.profile_image_url,
        }
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True, slots=True)
class Actor:
    """The verified end user a write is made for; the service decides what they may change."""

    user_id: int
    is_superuser: bool

    def may_change(self, owner_id: int) -> bool:
        """Users change themselves and their own posts; superusers change anyone's."""
        return self.is_superuser or self.user_id == owner_id

    def require_owner(self, owner_id: int) -> None:
        """NotAllowedError unless the actor may change what `owner_id` owns."""
        if not self.may_change(owner_id):
            raise NotAllowedError()

    def require_superuser(self) -> None:
        """NotAllowedError unless the actor is a superuser."""
        if not self.is_superuser:
            raise NotAllowedError()


@dataclass(frozen=True, slots=True)
class Post:
    """A post as stored."""

    id: int
    uuid: str
    title: str
    text: str
    media_url: str | None
    created_by_user_id: int
    created_at: datetime
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewPost:
    """A validated post to create."""

    title: str
    text: str
    media_url: str | None


@dataclass(frozen=True, slots=True)
class PostChanges:
    """A validated post update: only the fields that are set change."""

    title: str | None = None
    text: str | None = None
    media_url: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The fields to write."""
        fields = {"title": self.title, "text": self.text, "media_url": self.media_url}
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A validated page: 1-based `page`, `size` items."""

    page: int
    size: int

    @property
    def offset(self) -> int:
        """Rows to skip."""
        return (self.page - 1) * self.size


class UserNotFoundError(NotFoundError):
    """No live user has this id or username (soft-deleted users count as missing)."""

    def __init__(self) -> None:
        super().__init__("User not found")


class UsernameTakenError(AlreadyExistsError):
    """Another user (live or soft-deleted) already has this username."""

    def __init__(self) -> None:
        super().__init__("Username not available")


class EmailTakenError(AlreadyExistsError):
    """Another user (live or soft-deleted) already has this e-mail address."""

    def __init__(self) -> None:
        super().__init__("Email is already registered")


class InvalidCredentialsError(UnauthenticatedError):
    """No live user has this username or e-mail, or the password is wrong (never said which)."""

    def __init__(self) -> None:
        super().__init__("Wrong username, email or password.")


class TierNotFoundError(NotFoundError):
    """No tier has this id or name."""

    def __init__(self) -> None:
        super().__init__("Tier not found")


class TierNameTakenError(AlreadyExistsError):
    """Another tier already has this name."""

    def __init__(self) -> None:
        super().__init__("Tier Name not available")


class TierInUseError(ConflictError):
    """Users are still on the tier being deleted."""

    def __init__(self) -> None:
        super().__init__("Tier is in use by users")


class PostNotFoundError(NotFoundError):
    """No live post has this id under this author."""

    def __init__(self) -> None:
        super().__init__("Post not found")


class NotAllowedError(PermissionDeniedError):
    """The actor is neither the owner (of the profile, of the post) nor a superuser, or the change
    is a superuser's only."""

    def __init__(self) -> None:
        super().__init__("You do not have enough privileges.")


def _check_length(field: str, value: str, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not low <= len(value) <= high:
        raise InvalidArgumentError(f"{field} must be {low} to {high} characters long", field=field)


def _check_username(username: str) -> None:
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidArgumentError(
            "username must be 2 to 20 characters of a-z and 0-9", field="username"
        )


def normalize_email(email: str) -> str:
    """The canonical form of an e-mail address (lower case, IDNA domain), or InvalidArgumentError."""
    try:
        parsed = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidArgumentError(f"email is not valid: {exc}", field="email") from None
    return parsed.normalized.lower()


def check_url(field: str, url: str) -> str:
    """An absolute http(s) URL, or InvalidArgumentError naming `field`."""
    parts = urlsplit(url)
    if (
        len(url) > URL_MAX_LENGTH
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or any(c.isspace() for c in url)
    ):
        raise InvalidArgumentError(f"{field} must be an http or https URL", field=field)
    return url


def parse_registration(*, name: str, username: str, email: str, password: str) -> Registration:
    """Validate a sign-up, field by field, in the order of the REST contract."""
    _check_length("name", name, NAME_LENGTH)
    _check_username(username)
    if username in RESERVED_USERNAMES:
        raise UsernameTakenError()
    normalized = normalize_email(email)
    _check_length("password", password, PASSWORD_LENGTH)
    return Registration(name=name, username=username, email=normalized, password=password)


def parse_changes(
    *,
    name: str | None = None,
    username: str | None = None,
    email: str | None = None,
    profile_image_url: str | None = None,
) -> UserChanges:
    """Validate a profile update; fields left None stay as they are."""
    if name is not None:
        _check_length("name", name, NAME_LENGTH)
    if username is not None:
        _check_username(username)
        if username in RESERVED_USERNAMES:
            raise UsernameTakenError()
    return UserChanges(
        name=name,
        username=username,
        email=normalize_email(email) if email is not None else None,
        profile_image_url=(
            check_url("profile_image_url", profile_image_url)
            if profile_image_url is not None
            else None
        ),
    )


def parse_tier_name(name: str) -> str:
    """A tier name: 1 to 50 characters, no surrounding white space."""
    _check_length("name", name, TIER_NAME_LENGTH)
    if name != name.strip() or not name.isprintable():
        raise InvalidArgumentError(
            "name must be printable, without surrounding spaces", field="name"
        )
    return name


def parse_page(page: int, size: int) -> PageRequest:
    """A page request within bounds (page >= 1, 1 <= size <= 100)."""
    if page < 1:
        raise InvalidArgumentError("page must be at least 1", field="page")
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise InvalidArgumentError(
            f"items_per_page must be 1 to {MAX_PAGE_SIZE}", field="items_per_page"
        )
    return PageRequest(page=page, size=size)


def parse_post(*, title: str, text: str, media_url: str | None) -> NewPost:
    """Validate a new post."""
    _check_length("title", title, TITLE_LENGTH)
    _check_length("text", text, TEXT_LENGTH)
    return NewPost(
        title=title,
        text=text,
        media_url=check_url("media_url", media_url) if media_url is not None else None,
    )


def parse_post_changes(
    *, title: str | None = None, text: str | None = None, media_url: str | None = None
) -> PostChanges:
    """Validate a post update; fields left None stay as they are."""
    if title is not None:
        _check_length("title", title, TITLE_LENGTH)
    if text is not None:
        _check_length("text", text, TEXT_LENGTH)
    return PostChanges(
        title=title,
        text=text,
        media_url=check_url("media_url", media_url) if media_url is not None else None,
    )
