"""Users: what a user is, the rules a sign-up and a profile change obey, and their errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email

from meshplate_core.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    UnauthenticatedError,
)
from users.domain.fields import check_length, check_url

USERNAME_PATTERN = re.compile(r"[a-z0-9]{2,20}")
# Path segments of the REST API that a username in the same place would shadow.
RESERVED_USERNAMES = frozenset({"me", "tasks", "tier", "tiers", "user", "users"})
NAME_LENGTH = (2, 30)
PASSWORD_LENGTH = (8, 128)


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


def parse_registration(*, name: str, username: str, email: str, password: str) -> Registration:
    """Validate a sign-up, field by field, in the order of the REST contract."""
    check_length("name", name, NAME_LENGTH)
    _check_username(username)
    if username in RESERVED_USERNAMES:
        raise UsernameTakenError()
    normalized = normalize_email(email)
    check_length("password", password, PASSWORD_LENGTH)
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
        check_length("name", name, NAME_LENGTH)
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


@dataclass(frozen=True, slots=True)
class UserSearch:
    """Which users a listing shows: those whose name, username or e-mail contains `text`
    (ignoring case; empty: all), live ones or soft-deleted ones."""

    text: str = ""
    deleted: bool = False


def parse_search(text: str, *, deleted: bool) -> UserSearch:
    """A listing's search: at most an e-mail address long, surrounding white space dropped."""
    check_length("query", text, (0, 254))
    if not text.isprintable():
        raise InvalidArgumentError("query must be printable text", field="query")
    return UserSearch(text.strip(), deleted)
