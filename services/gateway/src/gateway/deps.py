"""Dependency aliases over the lifespan state (module scope, runtime classes: see STYLE §2.5)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from gateway.clients import AuthClient, HealthClient, RateLimitClient, UsersClient
from gateway.schemas import USERNAME_PATTERN
from gateway.settings import Settings
from meshplate_core.authenticator import Authenticator
from meshplate_core.errors import NotFoundError, PermissionDeniedError
from meshplate_core.redis_client import RedisClient
from meshplate_core.tokens import Claims, InvalidTokenError

# Declares the bearer scheme (and the docs' Authorize button); a missing token is ours to judge.
_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/login", auto_error=False)


async def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


async def _users(request: Request) -> UsersClient:
    client: UsersClient = request.state.users
    return client


async def _auth(request: Request) -> AuthClient:
    client: AuthClient = request.state.auth
    return client


async def _ratelimit(request: Request) -> RateLimitClient:
    client: RateLimitClient = request.state.ratelimit
    return client


async def _health(request: Request) -> HealthClient:
    client: HealthClient = request.state.health
    return client


async def _redis(request: Request) -> RedisClient:
    client: RedisClient = request.state.redis
    return client


async def _optional_user(
    request: Request, token: Annotated[str | None, Depends(_bearer)]
) -> Claims | None:
    """The caller, when a token is sent; a bad token is 401 even where none is needed."""
    if token is None:
        if "authorization" in request.headers:
            raise InvalidTokenError("Not authenticated")
        return None
    # The rate limiter authenticated this very header already: reuse its verdict.
    if (claims := getattr(request.state, "principal", None)) is not None:
        verified: Claims = claims
        return verified
    if (error := getattr(request.state, "principal_error", None)) is not None:
        raise error
    authenticator: Authenticator = request.state.authenticator
    return await authenticator.authenticate(token)


async def _current_user(user: Annotated[Claims | None, Depends(_optional_user)]) -> Claims:
    if user is None:
        raise InvalidTokenError("Not authenticated")
    return user


async def superuser(user: Annotated[Claims, Depends(_current_user)]) -> Claims:
    if not user.is_superuser:
        raise PermissionDeniedError("You do not have enough privileges.")
    return user


def plausible_username(username: str) -> str:
    """The username, if some user could have it; 404 without a call otherwise."""
    if not USERNAME_PATTERN.fullmatch(username):
        raise NotFoundError("User not found")
    return username


def require_owner(user: Claims, owner_id: int) -> None:
    """Pass the owner of a resource and superusers; 403 for anyone else."""
    if user.user_id != owner_id and not user.is_superuser:
        raise PermissionDeniedError("You do not have enough privileges.")


def may_see_email(user: Claims | None, owner_id: int) -> bool:
    """E-mail addresses are shown to their owner and to superusers only."""
    return user is not None and (user.user_id == owner_id or user.is_superuser)


AppSettings = Annotated[Settings, Depends(_settings)]
Users = Annotated[UsersClient, Depends(_users)]
Auth = Annotated[AuthClient, Depends(_auth)]
Health = Annotated[HealthClient, Depends(_health)]
Limits = Annotated[RateLimitClient, Depends(_ratelimit)]
AppRedis = Annotated[RedisClient, Depends(_redis)]
OptionalUser = Annotated[Claims | None, Depends(_optional_user)]
CurrentUser = Annotated[Claims, Depends(_current_user)]
Superuser = Annotated[Claims, Depends(superuser)]
