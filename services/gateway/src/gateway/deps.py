"""Dependency aliases over the lifespan state (module scope, runtime classes: see STYLE §2.5)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from redis.asyncio import Redis

from gateway.clients import HealthClient, UsersClient
from gateway.settings import Settings


def _settings(request: Request) -> Settings:
    settings: Settings = request.state.settings
    return settings


def _users(request: Request) -> UsersClient:
    client: UsersClient = request.state.users
    return client


def _health(request: Request) -> HealthClient:
    client: HealthClient = request.state.health
    return client


def _redis(request: Request) -> Redis:
    client: Redis = request.state.redis
    return client


def require_superuser() -> None:
    """Only a superuser passes. Verifying tokens arrives with the identity issue (#3); until
    then nobody can prove to be a superuser, so everyone is refused."""
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="Not authenticated",
        headers={"WWW-Authenticate": "Bearer"},
    )


AppSettings = Annotated[Settings, Depends(_settings)]
Users = Annotated[UsersClient, Depends(_users)]
Health = Annotated[HealthClient, Depends(_health)]
RedisClient = Annotated[Redis, Depends(_redis)]
