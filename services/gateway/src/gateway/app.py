"""create_app: the gateway's composition root (channels and clients live in the lifespan)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, MutableMapping, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any, TypedDict

import grpc
from fastapi import APIRouter, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from gateway.caching import CacheHeadersMiddleware
from gateway.clients import AuthClient, HealthClient, RateLimitClient, UsersClient
from gateway.documented import declare_common
from gateway.errors import NO_STORE, handle_domain_error, handle_rpc_error, handle_unexpected
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
from meshplate_core.errors import DomainError
from meshplate_core.metrics import HttpMetrics
from meshplate_core.process import load_settings
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
    redis: Redis
    authenticator: Authenticator


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


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    response = await http_exception_handler(request, exc)
    response.headers.update(NO_STORE)
    if exc.status_code == 405:
        response.headers["Allow"] = _allowed(request)
    return response


def _allowed(request: Request) -> str:
    """Every method some route serves at this path. Starlette names only the methods of the
    first route whose path matched (each method of a path is a route of its own)."""
    # A scope of its own: the request's carries what routing left in it for the route it chose.
    scope = {"type": "http", "path": request.url.path, "root_path": "", "method": request.method}
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # FastAPI's body (each error with the input it refused), written as ASCII JSON: an input
    # holding a lone surrogate cannot be encoded as UTF-8, and the answer must not fail on it.
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json", headers=NO_STORE)


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


_UNTRACED = frozenset({"/health", "/health/ready", "/health/db", "/health/redis", "/metrics"})


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in _UNTRACED


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


def from_environment() -> FastAPI:
    """The application for the settings of the environment: what each of several worker
    processes serves (see meshplate_core.http_server), its start-up heap settled
    (meshplate_core.heap)."""
    app = create_app(load_settings("gateway", Settings))
    heap.settle()
    return app


def create_app(settings: Settings) -> FastAPI:
    """The gateway application for these settings."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[State]:
        channels = _channels(settings)
        redis = Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.rpc_timeout_s,
            socket_connect_timeout=settings.health_timeout_s,
        )
        # Blocking reads need a connection of their own, without the short socket timeout.
        follower_redis = Redis.from_url(settings.redis_url, socket_connect_timeout=2)
        auth_client = AuthClient(channels["auth"], timeout_s=settings.rpc_timeout_s)
        revocations = RevocationList()
        authenticator = Authenticator(
            TokenVerifier(
                auth_client.jwks, issuer=settings.token_issuer, audience=settings.token_audience
            ),
            revocations,
        )
        reads = ReadModel(redis, ttl_s=settings.read_model_ttl_s)
        following = asyncio.create_task(revocations.follow(follower_redis))
        following_reads = asyncio.create_task(reads.follow(follower_redis))
        await _warm_up(authenticator, revocations, settings.startup_wait_s)
        try:
            yield State(
                settings=settings,
                auth=auth_client,
                authenticator=authenticator,
                users=UsersClient(channels["users"], timeout_s=settings.rpc_timeout_s, reads=reads),
                ratelimit=RateLimitClient(channels["ratelimit"], timeout_s=settings.rpc_timeout_s),
                health=HealthClient(
                    {name: (channels[name], PEERS[name].full_name) for name in PEERS},
                    timeout_s=settings.health_timeout_s,
                ),
                redis=redis,
            )
        finally:
            # Asked and cancelled; bounded: shutting down must not wait on a read that does not
            # come back (a cancellation can be absorbed inside the Redis client's read).
            revocations.stop()
            reads.stop()
            following.cancel()
            following_reads.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(_CLOSE_S):
                    await asyncio.gather(following, following_reads, return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_S):
                    await follower_redis.aclose()
                    await redis.aclose()
                    await asyncio.gather(*(channel.close() for channel in channels.values()))

    app = FastAPI(
        title="Meshplate",
        version=version("meshplate-gateway"),
        description="The FastAPI boilerplate's REST API, served by gRPC microservices.",
        lifespan=lifespan,
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
    app.add_middleware(CacheHeadersMiddleware, max_age_s=settings.client_cache_max_age)
    app.add_middleware(
        RateLimitMiddleware,
        trusted_proxies=settings.trusted_proxies,
        fail_open=settings.ratelimit_fail_open,
    )
    # Before anything reads a body (a declared oversize one is refused without a limiter call).
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    # Outside the limiter and the cache headers: every answer, a 304 included, carries the
    # request id (only the metrics middleware, added below, is further out).
    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(grpc.aio.AioRpcError, handle_rpc_error)
    app.add_exception_handler(DomainError, handle_domain_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, handle_unexpected)
    # Last: the posts router's /{username}/... paths must not shadow the fixed ones before it.
    routers = [
        health.router,
        auth.router,
        users.router,
        tiers.router,
        rate_limits.router,
        tasks.router,
        posts.router,
    ]
    _hold_flat(app, routers)
    declare_common(app.router.routes)
    registry = CollectorRegistry()
    app.add_middleware(
        MetricsMiddleware,
        metrics=HttpMetrics(registry),
        # To name the route of requests a middleware answered before routing (429, 503).
        routes=[route for router in routers for route in router.routes],
    )
    app.router.routes.append(metrics_route(registry))
    if (docs := docs_router(app, settings.environment)) is not None:
        app.include_router(docs)
    index_routes(app.router)
    return app
