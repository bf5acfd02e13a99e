"""The users service's composition root: servicer graph, default tier, serve or migrate."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.grpc_server import Register
from meshplate_core.runner import migrate_database, serve_database_service
from users.passwords import PasswordHasher
from users.service import UsersService
from users.settings import Settings
from users.storage.tiers import TierStore
from users.storage.users import UserStore

SERVICE_NAME = users_pb2.DESCRIPTOR.services_by_name["UsersService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"


def build(engine: AsyncEngine, *, settings: Settings) -> Register:
    """The servicer graph, ready to be added to a server (tests use this too)."""
    hasher = PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost_kib=settings.argon2_memory_cost_kib,
        parallelism=settings.argon2_parallelism,
    )
    servicer = UsersService(
        users=UserStore(engine), hasher=hasher, default_tier_name=settings.default_tier_name
    )
    return partial(users_pb2_grpc.add_UsersServiceServicer_to_server, servicer)


async def prepare(engine: AsyncEngine, *, settings: Settings) -> None:
    """Data that must exist before the service serves: the default tier."""
    await TierStore(engine).ensure(settings.default_tier_name)


async def serve(settings: Settings) -> None:
    """`python -m users`: serve until SIGTERM."""
    await serve_database_service(
        settings,
        service_name=SERVICE_NAME,
        application_name="users",
        migrations=MIGRATIONS,
        build=partial(build, settings=settings),
        prepare=partial(prepare, settings=settings),
    )


async def migrate_only(settings: Settings) -> None:
    """`python -m users migrate`: migrate and prepare the database, then exit."""
    await migrate_database(
        settings,
        application_name="users",
        migrations=MIGRATIONS,
        prepare=partial(prepare, settings=settings),
    )
