"""The ratelimit service's composition root: the limiter, the rules, serve or migrate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from envoy_rls import rls_pb2_grpc
from meshplate.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from meshplate_core.events import UserTierChanged
from meshplate_core.grpc_server import Register
from meshplate_core.metrics import export_tallies
from meshplate_core.runner import migrate_database, serve_database_service
from meshplate_core.streams import Follower
from meshplate_core.transactions import Database, Engine
from ratelimit.callers import callers
from ratelimit.envoy import EnvoyRateLimitService
from ratelimit.limiter import Limiter
from ratelimit.rules import Rules
from ratelimit.service import RateLimitService
from ratelimit.settings import Settings
from ratelimit.tiers import TierProjection

SERVICE_NAME = ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"


@contextlib.asynccontextmanager
async def build(
    engine: Engine, *, settings: Settings, registry: CollectorRegistry | None = None
) -> AsyncIterator[Register]:
    """The servicer graph, ready to be added to a server (tests use this too)."""
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    database = Database(engine)
    limiter = Limiter(
        database=database,
        redis=redis,
        default_limit=settings.default_limit,
        default_period_s=settings.default_period_s,
        fail_open=settings.fail_open,
        login_attempt_limit=settings.login_attempt_limit,
        login_attempt_period_s=settings.login_attempt_period_s,
        edge_limit=settings.edge_limit,
        edge_period_s=settings.edge_period_s,
        redis_timeout_s=settings.redis_timeout_s,
        batch_linger_s=settings.batch_linger_s,
    )
    if registry is not None:
        export_tallies(
            registry,
            "ratelimit_decisions",
            "Rate-limit decisions: allowed, denied (denied_locally: answered from memory), and "
            "checks that found Redis unreachable (redis_failures).",
            label="outcome",
            tallies=limiter.stats,
        )
    tiers = TierProjection()
    # Blocking reads get a connection of their own, without the decision path's short timeout.
    follower_redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2)
    follower = Follower(follower_redis, UserTierChanged, tiers.apply)
    following = asyncio.create_task(follower.run())
    servicer = RateLimitService(limiter, Rules(database, limiter), tiers)
    envoy = EnvoyRateLimitService(limiter, tiers, domain=settings.envoy_domain)

    def register(server: grpc.aio.Server) -> None:
        ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, server)
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(envoy, server)

    try:
        yield register
    finally:
        # Asked and cancelled: if the Redis client absorbs the cancellation, the request to stop
        # still ends the loop after its current read.
        follower.stop()
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            async with asyncio.timeout(3):
                await following
        await follower_redis.aclose()
        await limiter.close()
        await redis.aclose()


async def serve(settings: Settings) -> None:
    """`python -m ratelimit`: serve until SIGTERM."""
    await serve_database_service(
        settings,
        service_name=SERVICE_NAME,
        application_name="ratelimit",
        migrations=MIGRATIONS,
        build=partial(build, settings=settings),
        callers=callers(),
    )


async def migrate_only(settings: Settings) -> None:
    """`python -m ratelimit migrate`: migrate the database, then exit."""
    await migrate_database(settings, application_name="ratelimit", migrations=MIGRATIONS)
