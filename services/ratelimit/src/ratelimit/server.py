"""The ratelimit service's composition root: servicer graph, serve or migrate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from meshplate_core.grpc_server import Register
from meshplate_core.runner import migrate_database, serve_database_service
from ratelimit.service import RateLimitService
from ratelimit.settings import Settings

SERVICE_NAME = ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimitService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"


@asynccontextmanager
async def build(engine: AsyncEngine) -> AsyncIterator[Register]:
    """The servicer graph, ready to be added to a server (tests use this too)."""
    yield partial(ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server, RateLimitService())


async def serve(settings: Settings) -> None:
    """`python -m ratelimit`: serve until SIGTERM."""
    await serve_database_service(
        settings,
        service_name=SERVICE_NAME,
        application_name="ratelimit",
        migrations=MIGRATIONS,
        build=build,
    )


async def migrate_only(settings: Settings) -> None:
    """`python -m ratelimit migrate`: migrate the database, then exit."""
    await migrate_database(settings, application_name="ratelimit", migrations=MIGRATIONS)
