"""The auth service's composition root: servicer graph, serve or migrate."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from auth.service import AuthService
from auth.settings import Settings
from meshplate.auth.v1 import auth_pb2, auth_pb2_grpc
from meshplate_core.grpc_server import Register
from meshplate_core.runner import migrate_database, serve_database_service

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"


def build(engine: AsyncEngine) -> Register:
    """The servicer graph, ready to be added to a server (tests use this too)."""
    return partial(auth_pb2_grpc.add_AuthServiceServicer_to_server, AuthService())


async def serve(settings: Settings) -> None:
    """`python -m auth`: serve until SIGTERM."""
    await serve_database_service(
        settings,
        service_name=SERVICE_NAME,
        application_name="auth",
        migrations=MIGRATIONS,
        build=build,
    )


async def migrate_only(settings: Settings) -> None:
    """`python -m auth migrate`: migrate the database, then exit."""
    await migrate_database(settings, application_name="auth", migrations=MIGRATIONS)
