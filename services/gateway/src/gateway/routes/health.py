"""Liveness, readiness and the seed's per-component checks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from gateway.deps import AppRedis, AppSettings, Health
from meshplate_core.redis_client import REDIS_FAILURES, RedisClient

router = APIRouter(tags=["health"])

NO_STORE = {"Cache-Control": "no-store"}


class Liveness(BaseModel):
    """The process is up; nothing else was asked."""

    status: Literal["healthy"]
    version: str
    environment: str
    timestamp: datetime


class Readiness(BaseModel):
    """Each dependency's answer: "ok", or why it is not ready."""

    status: Literal["healthy", "unhealthy"]
    checks: dict[str, str]


async def redis_check(redis: RedisClient, timeout_s: float) -> str:
    """ "ok", or why Redis did not answer a PING within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            await redis.ping()
    except TimeoutError:
        return "timeout"
    except REDIS_FAILURES as exc:
        return f"unavailable: {exc.__class__.__name__}"
    return "ok"


def _answer(checks: dict[str, str], response: Response) -> Readiness:
    healthy = all(result == "ok" for result in checks.values())
    response.status_code = 200 if healthy else 503
    response.headers.update(NO_STORE)
    return Readiness(status="healthy" if healthy else "unhealthy", checks=checks)


@router.get(
    "/health",
    responses={
        503: {"description": "Draining: the process is stopping (meshplate_core.http_server)."}
    },
)
async def health(settings: AppSettings, request: Request, response: Response) -> Liveness:
    """Liveness: answers while the process runs, without asking any dependency."""
    response.headers.update(NO_STORE)
    return Liveness(
        status="healthy",
        version=request.app.version,
        environment=settings.environment,
        timestamp=datetime.now(UTC),
    )


@router.get("/health/ready", responses={503: {"model": Readiness}})
async def ready(
    settings: AppSettings, services: Health, redis: AppRedis, response: Response
) -> Readiness:
    """Readiness: every service (each reporting its own database) and Redis answer."""
    checks, redis_result = await asyncio.gather(
        services.check_all(), redis_check(redis, settings.health_timeout_s)
    )
    return _answer({**checks, "redis": redis_result}, response)


@router.get("/health/db", responses={503: {"model": Readiness}})
async def database(services: Health, response: Response) -> Readiness:
    """The databases: each service reports its own through gRPC health."""
    return _answer(await services.check_all(), response)


@router.get("/health/redis", responses={503: {"model": Readiness}})
async def redis_health(settings: AppSettings, redis: AppRedis, response: Response) -> Readiness:
    """Redis, as the gateway reaches it."""
    return _answer({"redis": await redis_check(redis, settings.health_timeout_s)}, response)
