"""The worker's composition root: the broker with its handlers, and the app with /health."""

from __future__ import annotations

import json

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.asgi.types import Scope
from faststream.redis import RedisBroker
from redis.asyncio import Redis

from meshplate_core.jobs import JobStore
from worker.handlers import router
from worker.settings import Settings


def build_broker(settings: Settings) -> RedisBroker:
    """A Redis broker with every handler subscribed and their resources in its context (tests
    use this directly)."""
    broker = RedisBroker(settings.redis_url)
    broker.include_router(router)
    jobs_redis = Redis.from_url(settings.redis_url)
    broker.context.set_global("jobs", JobStore(jobs_redis, ttl_s=settings.job_ttl_s))
    return broker


def build_app(settings: Settings) -> AsgiFastStream:
    """The worker process: the broker, started and stopped by the ASGI lifespan, and /health."""
    broker = build_broker(settings)

    @get(include_in_schema=False)
    async def health(scope: Scope) -> AsgiResponse:
        healthy = await broker.ping(settings.health_timeout_s)
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "checks": {"redis": "ok" if healthy else "unavailable"},
        }
        return AsgiResponse(
            json.dumps(body).encode(),
            status_code=200 if healthy else 503,
            headers={"content-type": "application/json", "cache-control": "no-store"},
        )

    async def close_jobs() -> None:
        jobs: JobStore = broker.context.get("jobs")
        await jobs.close()

    return AsgiFastStream(broker, asgi_routes=[("/health", health)], after_shutdown=[close_jobs])
