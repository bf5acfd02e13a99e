"""/health/* through the real stack, including a service that goes away and comes back."""

from __future__ import annotations

import asyncio

from .conftest import Stack


async def _ready(stack: Stack) -> tuple[int, dict[str, object]]:
    async with stack.client() as client:
        response = await client.get("/health/ready")
    return response.status_code, response.json()


async def test_ready_when_every_service_and_redis_answer(stack: Stack) -> None:
    status, body = await _ready(stack)

    assert status == 200
    assert body == {
        "status": "healthy",
        "checks": {"auth": "ok", "users": "ok", "ratelimit": "ok", "redis": "ok"},
    }


async def test_stopped_service_makes_ready_503_naming_it_until_it_returns(stack: Stack) -> None:
    await stack.stop("users")

    status, body = await _ready(stack)

    assert status == 503
    assert body["checks"] == {
        "auth": "ok",
        "users": "unavailable",
        "ratelimit": "ok",
        "redis": "ok",
    }

    await stack.start("users")
    async with asyncio.timeout(5):
        while (await _ready(stack))[0] != 200:
            await asyncio.sleep(0.1)


async def test_liveness_asks_nothing(stack: Stack) -> None:
    for name in ("auth", "users", "ratelimit"):
        await stack.stop(name)

    async with stack.client() as client:
        response = await client.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "healthy"
    assert set(response.json()) == {"status", "version", "environment", "timestamp"}


async def test_db_check_names_a_service_that_does_not_answer(stack: Stack) -> None:
    await stack.stop("ratelimit")

    async with stack.client() as client:
        db = await client.get("/health/db")
        redis = await client.get("/health/redis")

    assert db.status_code == 503
    assert db.json()["checks"]["ratelimit"] == "unavailable"
    assert (redis.status_code, redis.json()["checks"]) == (200, {"redis": "ok"})
