"""Tokens and sessions: what a login hands out, who a token names, and the errors of auth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from meshplate_core.tokens import InvalidTokenError


@dataclass(frozen=True, slots=True)
class Subject:
    """The user a token is issued to, as the users service knows them now."""

    user_id: int
    tier_id: int | None
    is_superuser: bool


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed token with its id and expiry."""

    token: str
    token_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a login or a refresh hands out."""

    access: IssuedToken
    refresh: IssuedToken


class InvalidRefreshTokenError(InvalidTokenError):
    """A refresh token is malformed, expired, revoked, rotated already, or its user is gone."""

    def __init__(self) -> None:
        super().__init__("Invalid refresh token.")
