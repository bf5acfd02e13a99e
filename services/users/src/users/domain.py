"""Users and tiers: what they are, the rules their fields obey, and the errors of this service."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from email_validator import EmailNotValidError, validate_email

from meshplate_core.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError

USERNAME_PATTERN = re.compile(r"[a-z0-9]{2,20}")
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


def _check_length(field: str, value: str, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not low <= len(value) <= high:
        raise InvalidArgumentError(f"{field} must be {low} to {high} characters long", field=field)


def normalize_email(email: str) -> str:
    """The canonical form of an e-mail address (lower case, IDNA domain), or InvalidArgumentError."""
    try:
        parsed = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidArgumentError(f"email is not valid: {exc}", field="email") from None
    return parsed.normalized.lower()


def parse_registration(*, name: str, username: str, email: str, password: str) -> Registration:
    """Validate a sign-up, field by field, in the order of the REST contract."""
    _check_length("name", name, NAME_LENGTH)
    if not USERNAME_PATTERN.fullmatch(username):
        raise InvalidArgumentError(
            "username must be 2 to 20 characters of a-z and 0-9", field="username"
        )
    normalized = normalize_email(email)
    _check_length("password", password, PASSWORD_LENGTH)
    return Registration(name=name, username=username, email=normalized, password=password)
