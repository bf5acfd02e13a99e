"""The worker's HTTP side (served by uvicorn beside the broker): /health (alive), /health/ready
(Redis answers) and /metrics (job outcomes, and each kind's queue read from Redis at the scrape)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from faststream.asgi import AsgiResponse, get
from faststream.asgi.types import ASGIApp, Scope
from faststream.redis import RedisBroker
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from meshplate_core.redis_client import REDIS_FAILURES
from worker.metrics import QueueDepth


def routes(
    broker: RedisBroker, registry: CollectorRegistry, depth: QueueDepth, *, ping_timeout_s: float
) -> list[tuple[str, ASGIApp]]:
    """The three routes, as AsgiFastStream takes them."""

    @get(include_in_schema=False)
    async def alive(scope: Scope) -> AsgiResponse:
        return _json({"status": "healthy"}, 200)

    @get(include_in_schema=False)
    async def ready(scope: Scope) -> AsgiResponse:
        healthy = await broker.ping(ping_timeout_s)
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "checks": {"redis": "ok" if healthy else "unavailable"},
        }
        return _json(body, 200 if healthy else 503)

    @get(include_in_schema=False)
    async def metrics(scope: Scope) -> AsgiResponse:
        with contextlib.suppress(*REDIS_FAILURES):
            await depth.read()
        return AsgiResponse(
            generate_latest(registry),
            status_code=200,
            headers={"content-type": CONTENT_TYPE_LATEST},
        )

    return [("/health", alive), ("/health/ready", ready), ("/metrics", metrics)]


def _json(body: dict[str, Any], status: int) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body).encode(),
        status_code=status,
        headers={"content-type": "application/json", "cache-control": "no-store"},
    )
