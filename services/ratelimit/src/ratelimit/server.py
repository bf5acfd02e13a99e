"""The ratelimit service's composition root: the limiter, the rules, serve or migrate."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry

from envoy_rls import rls_pb2_grpc
from meshplate.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from meshplate_core.events import UserTierChanged
from meshplate_core.following import Follower, following
from meshplate_core.grpc_server import Register
from meshplate_core.metrics import export_tallies
from meshplate_core.redis_client import RedisClient, connect
from meshplate_core.runner import migrate_database, serve_database_service
from meshplate_core.transactions import Database, Engine
from ratelimit.callers import callers
from ratelimit.envoy import EnvoyRateLimitService
from ratelimit.limiter import Limiter
from ratelimit.rules import Rules
from ratelimit.service import RateLimitService
from ratelimit.settings import Settings
from ratelimit.shards import Shards
from ratelimit.tiers import TierProjection

SERVICE_NAME = ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"


@contextlib.asynccontextmanager
async def build(
    engine: Engine, *, settings: Settings, registry: CollectorRegistry | None = None
) -> AsyncIterator[Register]:
    """The servicer graph, ready to be added to a server (tests use this too)."""
    redis = connect(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    database = Database(engine)
    limiter = _limiter(settings, database, redis)
    if registry is not None:
        _export(registry, limiter)
    tiers = TierProjection()
    servicer = RateLimitService(limiter, Rules(database, limiter), tiers)
    envoy = EnvoyRateLimitService(limiter, tiers, domain=settings.envoy_domain)

    def register(server: grpc.aio.Server) -> None:
        ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server(servicer, server)
        rls_pb2_grpc.add_RateLimitServiceServicer_to_server(envoy, server)

    try:
        async with following(settings.redis_url, Follower(UserTierChanged, tiers.apply)):
            yield register
    finally:
        await limiter.close()
        await redis.aclose()


def _limiter(settings: Settings, database: Database, redis: RedisClient) -> Limiter:
    return Limiter(
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
        shards=Shards.spread(settings.redis_shards),
    )


def _export(registry: CollectorRegistry, limiter: Limiter) -> None:
    export_tallies(
        registry,
        "ratelimit_decisions",
        "Rate-limit decisions: allowed, denied (denied_locally: answered from memory), and "
        "checks that found Redis unreachable (redis_failures).",
        label="outcome",
        tallies=limiter.stats,
    )


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
