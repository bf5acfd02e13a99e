"""Serving an ASGI app (the gateway, the worker's health) with uvicorn, stopped like every process.

uvicorn drains in-flight requests on SIGTERM and then re-raises the signal with the previous handler
back in place, which would end the process "killed by SIGTERM". With a no-op handler installed
first, that re-raise is harmless and a clean stop exits 0, like the gRPC services.

With `drain_s` above 0, the first SIGTERM or SIGINT does not close the listening socket at once:
for up to `drain_s` the server keeps accepting and answering, and every answer tells the proxy in
front to go elsewhere (`Connection: close`, so no pooled connection outlives the drain, and
Envoy's `x-envoy-immediate-health-check-fail`, which takes the host out of rotation on the spot),
while the health check answers 503 so that no health checker puts it back. The drain ends early
once a second passes without a request. Without it, a stopping process refuses connections the
proxy still sends to, and a POST already written to a pooled connection the process closes cannot
be retried safely. A second signal stops at once.

With `workers` above 1, uvicorn's supervisor runs that many processes accepting on one socket
(each builds its own app from `factory`, an import string), replaces one that dies, and on
SIGTERM or SIGINT stops them all, each finishing its in-flight requests (without the drain
above: uvicorn's supervisor builds its own servers). Their Prometheus samples are shared, so a
scrape of any reports them all.
"""

from __future__ import annotations

import math
import signal
import time
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from meshplate_core import heap
from meshplate_core.metrics import shared_by_processes
from meshplate_core.mtls import Tls

# How long without a request ends a drain early: the proxy has taken the process out.
QUIET_S = 1.0

DRAIN_HEADERS = [(b"connection", b"close"), (b"x-envoy-immediate-health-check-fail", b"true")]


def _ignore(_signum: int, _frame: Any) -> None:
    return None


class Drain:
    """Whether the process is draining, and when the drain is over."""

    def __init__(self, drain_s: float) -> None:
        self.drain_s = drain_s
        self.active = False
        self._started = 0.0
        self._last_request = 0.0
        self._requests = 0

    def begin(self, requests: int) -> bool:
        """Start draining, `requests` seen so far; False when there is nothing to drain or it
        has already begun."""
        if self.active or self.drain_s <= 0:
            return False
        self.active = True
        self._started = self._last_request = time.monotonic()
        self._requests = requests
        return True

    def over(self, requests: int) -> bool:
        """Whether the drain is done, given the requests the server has seen so far."""
        now = time.monotonic()
        if requests != self._requests:
            self._requests, self._last_request = requests, now
        return now - self._started >= self.drain_s or now - self._last_request >= QUIET_S


class Draining:
    """ASGI middleware: while draining, every HTTP answer carries DRAIN_HEADERS, and the health
    check at `health_path` answers 503 (a health checker takes the process out by its status)."""

    def __init__(self, app: Any, drain: Drain, health_path: str) -> None:
        self.app = app
        self.drain = drain
        self.health_path = health_path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.drain.active:
            await self.app(scope, receive, send)
            return
        if scope["path"] == self.health_path:
            await self._draining(send)
            return

        async def send_closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *DRAIN_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_closing)

    @staticmethod
    async def _draining(send: Any) -> None:
        body = b'{"status":"draining"}'
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *DRAIN_HEADERS,
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """uvicorn's server, draining (see above) before it stops."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.drain.begin(self.server_state.total_requests):
            super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain.active and self.drain.over(self.server_state.total_requests):
            self.should_exit = True
        return await super().on_tick(counter)


def _config(app: Any, *, host: str, port: int, grace_s: float, http: str, **extra: Any) -> Any:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http=http,
        log_config=None,
        timeout_graceful_shutdown=math.ceil(grace_s),
        # uvicorn would otherwise believe X-Forwarded-For from any local peer; the gateway decides
        # which proxies it trusts (GATEWAY_TRUSTED_PROXIES).
        proxy_headers=False,
        **extra,
    )


def serve_http(
    app: Any,
    *,
    host: str,
    port: int,
    grace_s: float,
    drain_s: float = 0.0,
    health_path: str = "/health",
    http: str = "httptools",
    tls: Tls | None = None,
) -> None:
    """Serve `app` on uvloop until SIGTERM or SIGINT, drain for up to `drain_s` (`health_path`
    answering 503), then give in-flight requests up to `grace_s` (the heap built so far settled
    first: meshplate_core.heap). With `tls`, HTTPS only, to clients with a certificate of the
    CA (meshplate_core.mtls), the certificate re-read when renewed."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore)
    heap.settle()
    drain = Drain(drain_s)
    extra: dict[str, Any] = {}
    if tls is not None:
        context = tls.http_server_context()
        extra["ssl_context_factory"] = lambda _config, _default: context
    config = _config(
        Draining(app, drain, health_path), host=host, port=port, grace_s=grace_s, http=http, **extra
    )
    DrainingServer(config, drain).run()


def serve_http_workers(
    factory: str, *, workers: int, host: str, port: int, grace_s: float, http: str = "httptools"
) -> None:
    """Serve the app that `factory` ("module:function") builds in `workers` processes (each
    its own: a factory settles its heap itself, see meshplate_core.heap)."""
    config = _config(
        factory, host=host, port=port, grace_s=grace_s, http=http, factory=True, workers=workers
    )
    with shared_by_processes():
        Multiprocess(config, sockets=[config.bind_socket()]).run()
