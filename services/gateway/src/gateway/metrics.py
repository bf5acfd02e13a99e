"""The gateway's Prometheus metrics: every request counted and timed by route template, and
`/metrics` (kept off the public edge by Envoy)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshplate_core.metrics import HttpMetrics, scraped

# Requests that matched no route share one label, so probing random paths cannot grow the series.
UNMATCHED = "unmatched"


class MetricsMiddleware:
    """Pure ASGI: observes each request once its answer started, labelled by its route template."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._metrics = metrics
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            template = getattr(scope.get("route"), "path", None) or self._template(scope)
            self._metrics.observe(
                scope["method"], template or UNMATCHED, status, time.perf_counter() - started
            )

    def _template(self, scope: Scope) -> str | None:
        """The route a request would have reached, when a middleware answered it first (429,
        503): its series then still carries the route."""
        for route in self._routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return getattr(route, "path", None)
        return None


def metrics_route(registry: CollectorRegistry) -> Route:
    """GET /metrics: the registry in Prometheus' text format."""

    async def scrape(_request: Request) -> Response:
        return Response(generate_latest(scraped(registry)), media_type=CONTENT_TYPE_LATEST)

    return Route("/metrics", scrape, methods=["GET"], include_in_schema=False)
