"""The life of a gRPC service that owns a database: connect, migrate, serve, dispose.

A service supplies what is its own (what data must exist before it serves, and `build`: an async
context manager that opens its other resources and background tasks and yields the servicers to
register) and gets the same start-up and shutdown as every other service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from meshplate_core.callers import Callers, granted
from meshplate_core.database import migrate, open_engine, ping, wait_until_up
from meshplate_core.grpc_server import Register, serve_until_terminated
from meshplate_core.metrics import RpcMetrics, exposed
from meshplate_core.settings import GrpcServiceSettings


class Build(Protocol):
    """Opens a service's resources and yields its servicers (its tallies exported to `registry`)."""

    def __call__(
        self, engine: AsyncEngine, *, registry: CollectorRegistry | None = None
    ) -> AbstractAsyncContextManager[Register]: ...


Prepare = Callable[[AsyncEngine], Awaitable[None]]


async def _no_data(_engine: AsyncEngine) -> None:
    return None


def connect(settings: GrpcServiceSettings, *, application_name: str) -> AsyncEngine:
    """The service's engine, from its settings."""
    return open_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        application_name=application_name,
    )


async def serve_database_service(
    settings: GrpcServiceSettings,
    *,
    service_name: str,
    application_name: str,
    migrations: Path,
    build: Build,
    callers: Sequence[Callers],
    prepare: Prepare = _no_data,
) -> None:
    """Migrate (when `migrate_on_start`), prepare data, serve until SIGTERM with /metrics on
    `metrics_port` (mutual TLS, each RPC's callers from `callers` and the settings' grants),
    close everything."""
    tls = settings.tls()
    tables = granted(callers, settings.grants)
    engine = connect(settings, application_name=application_name)
    registry = CollectorRegistry()
    try:
        if settings.migrate_on_start:
            await migrate(engine, migrations)
        await prepare(engine)
        async with build(engine, registry=registry) as register:
            with exposed(registry, host=settings.metrics_host, port=settings.metrics_port):
                await serve_until_terminated(
                    register,
                    service_name=service_name,
                    host=settings.grpc_host,
                    port=settings.grpc_port,
                    grace_s=settings.shutdown_grace_s,
                    drain_s=settings.shutdown_drain_s,
                    max_connection_age_s=settings.max_connection_age_s,
                    check=partial(ping, engine, timeout_s=settings.health_interval_s),
                    check_interval_s=settings.health_interval_s,
                    metrics=RpcMetrics(registry),
                    tls=tls,
                    callers=tables,
                )
    finally:
        await engine.dispose()


async def migrate_database(
    settings: GrpcServiceSettings,
    *,
    application_name: str,
    migrations: Path,
    prepare: Prepare = _no_data,
) -> None:
    """Wait for the database (`database_wait_s`), migrate and prepare data, then return
    (`python -m <service> migrate`)."""
    engine = connect(settings, application_name=application_name)
    try:
        await wait_until_up(engine, within_s=settings.database_wait_s)
        await migrate(engine, migrations)
        await prepare(engine)
    finally:
        await engine.dispose()
