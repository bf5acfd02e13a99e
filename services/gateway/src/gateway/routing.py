"""Route lookup by one regular expression per method, in front of the app's router.

Starlette tries the routes one by one, in order, and FastAPI's `APIRoute.matches` costs about a
microsecond each: a page of posts, the 34th route, spent 34 us (a tenth of the gateway's CPU for
it) finding its route. `RouteIndex` finds the same route with one match: for each method, the
path patterns of the routes that accept it, in order, joined into one alternation, whose first
alternative that matches is the first route Starlette would match fully. The route is then
matched (its parameters converted) and handled as the router does. A request no route takes
fully (404, 405, a redirect of the trailing slash) goes to the router itself, which decides it
as before; so do the routes after the first one the index cannot read (an included router, a
mount), as a match among them depends on what those decide.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi.routing import APIRoute
from fastapi.telemetry._api import _route_selected
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Route, Router
from starlette.types import Receive, Scope, Send

# A named group of a route's pattern: the alternatives must not share group names.
_NAMED_GROUP = re.compile(r"\(\?P<[^>]+>")


def _indexable(routes: Sequence[BaseRoute]) -> list[Route]:
    # The leading routes whose matching is Starlette's own (a path pattern and methods).
    leading: list[Route] = []
    for route in routes:
        if type(route) not in (Route, APIRoute) or not isinstance(route, Route):
            break
        if route.methods is None:
            break
        leading.append(route)
    return leading


def _alternation(routes: Sequence[Route]) -> re.Pattern[str] | None:
    if not routes:
        return None
    alternatives = [
        f"(?P<r{n}>{_NAMED_GROUP.sub('(?:', route.path_regex.pattern)})"
        for n, route in enumerate(routes)
    ]
    return re.compile("|".join(alternatives))


class RouteIndex:
    """The router's ASGI app, with the routes it would match fully found by index."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.app = router.app
        leading = _indexable(router.routes)
        methods = {method for route in leading for method in route.methods or ()}
        self._routes: dict[str, tuple[list[Route], re.Pattern[str] | None]] = {}
        for method in methods:
            accepting = [route for route in leading if method in (route.methods or ())]
            self._routes[method] = (accepting, _alternation(accepting))

    def find(self, scope: Scope) -> Route | None:
        """The first route that matches this request fully, if the index can tell."""
        routes, pattern = self._routes.get(scope["method"], ([], None))
        if pattern is None:
            return None
        found = pattern.match(get_route_path(scope))
        if found is None or found.lastgroup is None:
            return None
        return routes[int(found.lastgroup[1:])]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.find(scope) if scope["type"] == "http" else None
        if route is not None:
            match, child_scope = route.matches(scope)
            if match == Match.FULL:
                scope.setdefault("router", self.router)
                scope.update(child_scope)
                _route_selected(scope=scope, path=route.path_format)
                await route.handle(scope, receive, send)
                return
        await self.app(scope, receive, send)


def index_routes(router: Router) -> None:
    """Serve `router`'s requests through a RouteIndex of its routes as they are now. The index
    takes the place of the router's own middleware stack, so a router with middleware of its
    own is refused rather than left without it."""
    if router.middleware_stack != router.app:
        raise ValueError("the router has middleware of its own: it cannot be indexed")
    router.middleware_stack = RouteIndex(router)
