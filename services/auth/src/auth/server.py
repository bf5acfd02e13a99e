"""The auth service's composition root: keys, the object graph, its background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from prometheus_client import CollectorRegistry

from auth.callers import callers
from auth.directory import UsersDirectory
from auth.issuer import TokenIssuer
from auth.keys import load_key_ring
from auth.service import AuthService
from auth.sessions import Sessions
from auth.settings import Settings
from auth.storage.tables import outbox as outbox_table
from meshplate.auth.v1 import auth_pb2, auth_pb2_grpc
from meshplate.users.v1 import users_pb2
from meshplate_core.channels import open_channel
from meshplate_core.events import TokensRevoked, UserDeleted, UserRightsChanged
from meshplate_core.grpc_server import Register
from meshplate_core.outbox import Outbox
from meshplate_core.redis_client import connect
from meshplate_core.runner import migrate_database, serve_database_service
from meshplate_core.streams import consume
from meshplate_core.transactions import Database, Engine

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
USERS = users_pb2.DESCRIPTOR.services_by_name["UsersService"]
MIGRATIONS = Path(__file__).parent / "migrations"
GROUP = "auth"
_STOP_S = 2.0


def issuer_for(settings: Settings) -> TokenIssuer:
    """The token issuer with the configured keys and lifetimes."""
    keys = load_key_ring(
        pem=settings.signing_keys.get_secret_value() if settings.signing_keys else None,
        key_file=settings.signing_key_file,
        generated_file=settings.generated_key_file,
        environment=settings.environment,
    )
    return TokenIssuer(
        keys,
        issuer=settings.issuer,
        audience=settings.audience,
        access_lifetime=timedelta(minutes=settings.access_token_expire_minutes),
        refresh_lifetime=timedelta(days=settings.refresh_token_expire_days),
    )


@contextlib.asynccontextmanager
async def build(
    engine: Engine, *, settings: Settings, registry: CollectorRegistry | None = None
) -> AsyncIterator[Register]:
    """The servicer with its relay and its reaction to deleted users running (tests use this).
    Its RPCs are counted by the server; it keeps no tallies of its own for `registry`."""
    issuer = issuer_for(settings)
    redis = connect(settings.redis_url)
    channel = open_channel(
        settings.users_addr,
        services=[USERS],
        timeout_s=settings.rpc_timeout_s,
        tls=settings.tls(),
        server="users",
    )
    outbox = Outbox(
        outbox_table,
        engine,
        redis,
        keep_s={TokensRevoked.STREAM: issuer.access_lifetime.total_seconds()},
    )
    sessions = Sessions(
        database=Database(engine),
        outbox=outbox,
        issuer=issuer,
        users=UsersDirectory(channel, timeout_s=settings.rpc_timeout_s),
    )

    async def revoke_every_token(event: UserDeleted | UserRightsChanged) -> None:
        # A deleted user's tokens, and those carrying rights the user no longer has: every one
        # issued until now, since the event was stamped before its commit (a login between the
        # two got the old rights) and on another machine's clock.
        await sessions.revoke_user(event.user_id, before=max(event.occurred_at, datetime.now(UTC)))

    relay = asyncio.create_task(outbox.relay())
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    followers = [
        asyncio.create_task(
            consume(redis, UserDeleted, group=GROUP, consumer=consumer, handle=revoke_every_token)
        ),
        asyncio.create_task(
            consume(
                redis, UserRightsChanged, group=GROUP, consumer=consumer, handle=revoke_every_token
            )
        ),
    ]
    try:
        yield partial(auth_pb2_grpc.add_AuthServiceServicer_to_server, AuthService(sessions))
    finally:
        for follower in followers:
            follower.cancel()
        outbox.stop()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(_STOP_S):
                await asyncio.gather(relay, *followers, return_exceptions=True)
        await channel.close()
        await redis.aclose()


async def serve(settings: Settings) -> None:
    """`python -m auth`: serve until SIGTERM."""
    issuer_for(settings)  # no keys is a configuration error: fail before migrating
    await serve_database_service(
        settings,
        service_name=SERVICE_NAME,
        application_name="auth",
        migrations=MIGRATIONS,
        build=partial(build, settings=settings),
        callers=callers(),
    )


async def migrate_only(settings: Settings) -> None:
    """`python -m auth migrate`: migrate the database, then exit."""
    await migrate_database(settings, application_name="auth", migrations=MIGRATIONS)
