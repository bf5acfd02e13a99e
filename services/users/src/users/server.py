"""The users service's composition root: the object graph, its background relay, serve or migrate."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

from prometheus_client import CollectorRegistry

from meshplate.auth.v1 import auth_pb2, auth_pb2_grpc
from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.authenticator import Authenticator
from meshplate_core.channels import Caller, open_channel
from meshplate_core.events import UserTierChanged
from meshplate_core.following import following
from meshplate_core.grpc_server import Register
from meshplate_core.metrics import export_tallies
from meshplate_core.outbox import Outbox
from meshplate_core.redis_client import connect
from meshplate_core.revocations import RevocationList
from meshplate_core.runner import migrate_database, serve_database_service
from meshplate_core.transactions import Database, Engine
from meshplate_core.verifier import FetchKeys, TokenVerifier, published_keys
from users.accounts import Accounts
from users.cache import ReadCache
from users.callers import callers
from users.domain.users import parse_registration
from users.passwords import PasswordHasher
from users.posts import Posts
from users.service import UsersService
from users.settings import Settings
from users.storage.tables import outbox as outbox_table

SERVICE_NAME = users_pb2.DESCRIPTOR.services_by_name["UsersService"].full_name
AUTH = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
MIGRATIONS = Path(__file__).parent / "migrations"
# How long the relay may take to publish what is left at shutdown.
_FINAL_PUBLISH_S = 2.0


def hasher_for(settings: Settings) -> PasswordHasher:
    """The password hasher with the configured argon2id cost."""
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost_kib=settings.argon2_memory_cost_kib,
        parallelism=settings.argon2_parallelism,
        concurrency=settings.password_concurrency,
        nice=settings.password_nice,
        idle=settings.password_idle,
        default_deadline_s=settings.password_default_deadline_s,
    )


@contextlib.asynccontextmanager
async def open_accounts(
    engine: Engine, *, settings: Settings, registry: CollectorRegistry | None = None
) -> AsyncIterator[tuple[Accounts, Posts]]:
    """The use cases with their outbox relay running; the relay's last round runs on exit."""
    redis = connect(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    # Tier changes matter to ratelimit only until the tokens that predate them expire; a day
    # covers any access-token lifetime in use.
    outbox = Outbox(outbox_table, engine, redis, keep_s={UserTierChanged.STREAM: 86400.0})
    cache = ReadCache(redis, ttl_s=settings.cache_ttl_s)
    if registry is not None:
        export_tallies(
            registry,
            "users_cache_events",
            "What the read cache did: hits, misses, loads from the database, Redis errors.",
            label="event",
            tallies=cache.stats,
        )
    hasher = hasher_for(settings)
    database = Database(engine)
    relay = asyncio.create_task(outbox.relay())
    try:
        yield (
            Accounts(
                database=database,
                outbox=outbox,
                hasher=hasher,
                default_tier_name=settings.default_tier_name,
                cache=cache,
            ),
            Posts(database=database, cache=cache),
        )
    finally:
        hasher.close()
        outbox.stop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_FINAL_PUBLISH_S):
                await relay
        await redis.aclose()


@contextlib.asynccontextmanager
async def auth_keys(settings: Settings) -> AsyncIterator[FetchKeys]:
    """auth's published keys, fetched over a channel to auth (as the users workload)."""
    channel = open_channel(
        settings.auth_addr,
        services=[AUTH],
        timeout_s=settings.rpc_timeout_s,
        tls=settings.tls(),
        server="auth",
    )
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    call = Caller(timeout_s=settings.rpc_timeout_s)

    async def fetch() -> list[dict[str, str]]:
        return published_keys(await call(stub.GetJwks, auth_pb2.GetJwksRequest()))

    try:
        yield fetch
    finally:
        await channel.close()


@contextlib.asynccontextmanager
async def followed_revocations(settings: Settings) -> AsyncIterator[RevocationList]:
    """auth's revocations, replayed and followed (as the gateways do) while the block runs."""
    revocations = RevocationList()
    async with following(settings.redis_url, revocations, stop_s=_FINAL_PUBLISH_S):
        yield revocations


@contextlib.asynccontextmanager
async def build(
    engine: Engine,
    *,
    settings: Settings,
    registry: CollectorRegistry | None = None,
    keys: FetchKeys | None = None,
) -> AsyncIterator[Register]:
    """The servicer, ready to be added to a server (tests use this too); the end users' tokens
    verified with `keys` (default: auth's, fetched from auth)."""
    async with contextlib.AsyncExitStack() as exits:
        accounts, posts = await exits.enter_async_context(
            open_accounts(engine, settings=settings, registry=registry)
        )
        fetch = keys if keys is not None else await exits.enter_async_context(auth_keys(settings))
        revocations = await exits.enter_async_context(followed_revocations(settings))
        verifier = TokenVerifier(
            fetch, issuer=settings.token_issuer, audience=settings.token_audience
        )
        tokens = Authenticator(verifier, revocations)
        yield partial(
            users_pb2_grpc.add_UsersServiceServicer_to_server,
            UsersService(accounts, posts, tokens),
        )


async def prepare(engine: Engine, *, settings: Settings) -> None:
    """Data that must exist before the service serves: the default tier and the first admin."""
    admin = parse_registration(
        name=settings.admin_name,
        username=settings.admin_username,
        email=settings.admin_email,
        password=settings.admin_password.get_secret_value(),
    )
    async with open_accounts(engine, settings=settings) as (accounts, _posts):
        async with accounts.transaction() as conn:
            await accounts.tiers.ensure(conn, settings.default_tier_name)
        await accounts.ensure_admin(admin)


async def serve(settings: Settings) -> None:
    """`python -m users`: serve until SIGTERM."""
    await serve_database_service(
        settings,
        service_name=SERVICE_NAME,
        application_name="users",
        migrations=MIGRATIONS,
        build=partial(build, settings=settings),
        callers=callers(),
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
