"""The route index finds, for every route of the gateway and every method, the route Starlette's
own walk through the routes would take, and leaves to the router what only it can decide."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Match, Route, Router

from gateway.app import create_app
from gateway.routing import RouteIndex, index_routes

from .conftest import settings_for

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
# A value for each path parameter, by name, that the parameter's pattern accepts.
_PARAMETER = re.compile(r"{([^}:]+)(?::[^}]+)?}")


@pytest.fixture(scope="module")
def app() -> FastAPI:
    # Routing needs no lifespan: the peers are never called.
    return create_app(settings_for("local", "redis://127.0.0.1:1/0"))


def _scope(method: str, path: str) -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def _walked(app: FastAPI, scope: dict[str, object]) -> Route | None:
    # What Starlette's router does: the first route, in order, that matches fully.
    for route in app.router.routes:
        match, _child = route.matches(scope)
        if match == Match.FULL:
            return route if isinstance(route, Route) else None
    return None


def _paths(app: FastAPI) -> list[str]:
    routes = [route for route in app.router.routes if isinstance(route, Route)]
    return sorted({_PARAMETER.sub("7", route.path_format) for route in routes})


def test_the_app_serves_through_the_index(app: FastAPI) -> None:
    assert isinstance(app.router.middleware_stack, RouteIndex)


def test_every_route_and_method_finds_the_route_the_router_would(app: FastAPI) -> None:
    index = RouteIndex(app.router)
    paths = _paths(app)
    found = 0

    for path in [*paths, "/api/v1/user/me/", "/api/v1/nobody/posts", "/api/v1/nowhere"]:
        for method in METHODS:
            scope = _scope(method, path)
            walked = _walked(app, scope)
            if walked is not None and walked.path_format.startswith("/docs"):
                continue  # the docs are an included router: the index leaves them alone
            assert index.find(scope) is walked, (method, path)
            found += walked is not None

    assert found >= len(paths)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/tier/free"),  # the path is known, the method is not: 405
        ("GET", "/api/v1/nothing/here/at/all"),  # no route: 404
        ("GET", "/api/v1/users/"),  # the router may redirect to the path without the slash
    ],
)
def test_what_no_route_takes_fully_is_left_to_the_router(
    app: FastAPI, method: str, path: str
) -> None:
    assert RouteIndex(app.router).find(_scope(method, path)) is None


def test_routes_after_one_the_index_cannot_read_are_left_to_the_router() -> None:
    app = FastAPI()

    @app.get("/first")
    async def first() -> None: ...

    app.mount("/mounted", FastAPI())

    @app.get("/after")
    async def after() -> None: ...

    index = RouteIndex(app.router)

    assert index.find(_scope("GET", "/first")) is app.router.routes[-3]
    assert index.find(_scope("GET", "/after")) is None


def test_a_router_with_middleware_of_its_own_is_not_indexed() -> None:
    router = Router(middleware=[Middleware(GZipMiddleware)])

    with pytest.raises(ValueError, match="middleware of its own"):
        index_routes(router)
