"""create_app: the gateway's composition root, as named build steps. Channels and clients live in
the lifespan (`_lifespan`, built from the steps above it); the exception handlers in
gateway.errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, TypedDict

import grpc
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry

from gateway.admin.panel import mount_admin
from gateway.admin.traffic import Traffic
from gateway.caching import CacheHeadersMiddleware
from gateway.clients import AuthClient, HealthClient, RateLimitClient, UsersClient
from gateway.documented import declare_common
from gateway.errors import add_exception_handlers
from gateway.limiting import RateLimitMiddleware
from gateway.metrics import MetricsMiddleware, metrics_route
from gateway.middleware import BodyLimitMiddleware, RequestIdMiddleware
from gateway.reads import ReadModel
from gateway.routes import auth, health, posts, rate_limits, tasks, tiers, users
from gateway.routes.docs import docs_router
from gateway.routing import index_routes
from gateway.settings import Settings
from meshplate.auth.v1 import auth_pb2
from meshplate.ratelimit.v1 import ratelimit_pb2
from meshplate.users.v1 import users_pb2
from meshplate_core import heap
from meshplate_core.authenticator import Authenticator
from meshplate_core.channels import open_channel
from meshplate_core.following import following
from meshplate_core.metrics import HttpMetrics
from meshplate_core.process import load_settings
from meshplate_core.redis_client import RedisClient, connect
from meshplate_core.revocations import RevocationList
from meshplate_core.verifier import TokenVerifier

log = logging.getLogger(__name__)

# How long each step of shutting down may take.
_CLOSE_S = 3.0

PEERS = {
    "auth": auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    "users": users_pb2.DESCRIPTOR.services_by_name["UsersService"],
    "ratelimit": ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimitService"],
}


class State(TypedDict):
    """What every request can reach through `request.state` (see deps.py)."""

    settings: Settings
    auth: AuthClient
    users: UsersClient
    ratelimit: RateLimitClient
    health: HealthClient
    redis: RedisClient
    authenticator: Authenticator


@dataclass(frozen=True)
class _Connections:
    """What the lifespan opens, and closes at the end: a channel per peer, a Redis client."""

    channels: dict[str, grpc.aio.Channel]
    redis: RedisClient


def _channels(settings: Settings) -> dict[str, grpc.aio.Channel]:
    addresses = {
        "auth": settings.auth_addr,
        "users": settings.users_addr,
        "ratelimit": settings.ratelimit_addr,
    }
    tls = settings.tls()
    return {
        name: open_channel(
            addresses[name],
            services=[service],
            timeout_s=settings.rpc_timeout_s,
            tls=tls,
            server=name,
        )
        for name, service in PEERS.items()
    }


def _connect(settings: Settings) -> _Connections:
    return _Connections(
        channels=_channels(settings),
        redis=connect(
            settings.redis_url,
            socket_timeout=settings.rpc_timeout_s,
            socket_connect_timeout=settings.health_timeout_s,
        ),
    )


def _authenticator(
    settings: Settings, auth: AuthClient, revocations: RevocationList
) -> Authenticator:
    verifier = TokenVerifier(
        auth.jwks, issuer=settings.token_issuer, audience=settings.token_audience
    )
    return Authenticator(verifier, revocations)


async def _warm_up(
    authenticator: Authenticator, revocations: RevocationList, wait_s: float
) -> None:
    """Fetch auth's keys and replay the revocations, waiting up to `wait_s` for both; what is
    still missing then is retried on demand, and tokens are refused until it is there."""
    try:
        async with asyncio.timeout(wait_s):
            while True:
                try:
                    await authenticator.load_keys()
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.2)
            await revocations.synced.wait()
    except TimeoutError:
        log.warning("starting without auth's keys or the revocation list; tokens wait for them")


def _state(
    settings: Settings,
    connections: _Connections,
    *,
    auth: AuthClient,
    authenticator: Authenticator,
    reads: ReadModel,
) -> State:
    channels = connections.channels
    return State(
        settings=settings,
        auth=auth,
        authenticator=authenticator,
        users=UsersClient(channels["users"], timeout_s=settings.rpc_timeout_s, reads=reads),
        ratelimit=RateLimitClient(channels["ratelimit"], timeout_s=settings.rpc_timeout_s),
        health=HealthClient(
            {name: (channels[name], PEERS[name].full_name) for name in PEERS},
            timeout_s=settings.health_timeout_s,
        ),
        redis=connections.redis,
    )


async def _disconnect(connections: _Connections) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_CLOSE_S):
            await connections.redis.aclose()
            await asyncio.gather(*(channel.close() for channel in connections.channels.values()))


def _lifespan(settings: Settings) -> Callable[[FastAPI], AbstractAsyncContextManager[State]]:
    """Connect, build the clients, follow and warm up; serve the state; stop following and
    disconnect."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[State]:
        connections = _connect(settings)
        auth_client = AuthClient(connections.channels["auth"], timeout_s=settings.rpc_timeout_s)
        revocations = RevocationList()
        authenticator = _authenticator(settings, auth_client, revocations)
        reads = ReadModel(connections.redis, ttl_s=settings.read_model_ttl_s)
        try:
            # The revocations and the read model's changes, each followed in a task of its own.
            async with following(settings.redis_url, revocations, reads, stop_s=_CLOSE_S):
                await _warm_up(authenticator, revocations, settings.startup_wait_s)
                yield _state(
                    settings,
                    connections,
                    auth=auth_client,
                    authenticator=authenticator,
                    reads=reads,
                )
        finally:
            await _disconnect(connections)

    return lifespan


_UNTRACED = frozenset({"/health", "/health/ready", "/health/db", "/health/redis", "/metrics"})


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in _UNTRACED


def _application(settings: Settings) -> FastAPI:
    return FastAPI(
        title="Meshplate",
        version=version("meshplate-gateway"),
        description="The FastAPI boilerplate's REST API, served by gRPC microservices.",
        lifespan=_lifespan(settings),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # FastAPI's own OpenTelemetry tracing: a server span per request continuing the trace
        # Envoy (or the client) started, current while the handler makes its gRPC calls and
        # enqueues jobs. Metrics are Prometheus' (gateway.metrics); logs are our JSON lines.
        # Probes and scrapes are not traced.
        telemetry={
            "tracing": True,
            "metrics": False,
            "logs": False,
            "auto_configure": False,
            "exclude": _untraced,
        },
    )


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Every middleware but the metrics one (the outermost, added with the routes it names).
    Each one added is outside those added before it."""
    app.add_middleware(CacheHeadersMiddleware, max_age_s=settings.client_cache_max_age)
    app.add_middleware(
        RateLimitMiddleware,
        trusted_proxies=settings.trusted_proxies,
        fail_open=settings.ratelimit_fail_open,
    )
    # Before anything reads a body (a declared oversize one is refused without a limiter call).
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Outside the limiter and the cache headers: every answer, a 304 included, carries the
    # request id (only the metrics middleware is further out).
    app.add_middleware(RequestIdMiddleware)


def _routers() -> list[APIRouter]:
    # Last: the posts router's /{username}/... paths must not shadow the fixed ones before it.
    return [
        health.router,
        auth.router,
        users.router,
        tiers.router,
        rate_limits.router,
        tasks.router,
        posts.router,
    ]


def _hold_flat(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """The routers' routes, in order, held by the app's own router. FastAPI keeps an included
    router as a nested node, matched through per-request contexts: routing a page of posts (the
    34th route) cost 106 us that way against 34 us held flat, a sixth of the gateway's CPU for
    that request. Our routers carry only a prefix and tags, which their routes already have (the
    OpenAPI document is the same); one with more than that must be included instead."""
    for router in routers:
        if router.dependencies or router.callbacks or router.responses:
            raise ValueError(f"{router.prefix or '/'}: include it, its settings apply on include")
        app.router.routes.extend(router.routes)


def _add_metrics(app: FastAPI, routers: Sequence[APIRouter]) -> CollectorRegistry:
    """The metrics middleware, outermost, and GET /metrics; their registry."""
    registry = CollectorRegistry()
    app.add_middleware(
        MetricsMiddleware,
        metrics=HttpMetrics(registry),
        # To name the route of requests a middleware answered before routing (429, 503).
        routes=[route for router in routers for route in router.routes],
    )
    app.router.routes.append(metrics_route(registry))
    return registry


def from_environment() -> FastAPI:
    """The application for the settings of the environment: what each of several worker
    processes serves (see meshplate_core.http_server), its start-up heap settled
    (meshplate_core.heap)."""
    app = create_app(load_settings("gateway", Settings))
    heap.settle()
    return app


def create_app(settings: Settings) -> FastAPI:
    """The gateway application for these settings."""
    app = _application(settings)
    _add_middleware(app, settings)
    add_exception_handlers(app)
    routers = _routers()
    _hold_flat(app, routers)
    declare_common(app.router.routes)
    registry = _add_metrics(app, routers)
    if (docs := docs_router(app, settings.environment)) is not None:
        app.include_router(docs)
    index_routes(app.router)
    if settings.admin_on:
        mount_admin(app, settings, Traffic(registry))
    return app
