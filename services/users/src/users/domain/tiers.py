"""Tiers: what a tier is, the rule its name obeys, and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from meshplate_core.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)
from users.domain.fields import check_length

TIER_NAME_LENGTH = (1, 50)


@dataclass(frozen=True, slots=True)
class Tier:
    """A named class of users that rate-limit rules refer to."""

    id: int
    name: str
    created_at: datetime


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


def parse_tier_name(name: str) -> str:
    """A tier name: 1 to 50 characters, no surrounding white space."""
    check_length("name", name, TIER_NAME_LENGTH)
    if name != name.strip() or not name.isprintable():
        raise InvalidArgumentError(
            "name must be printable, without surrounding spaces", field="name"
        )
    return name
