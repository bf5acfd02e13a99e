"""Serving an ASGI app (the gateway, the worker's health) with uvicorn, stopped like every process.

uvicorn drains in-flight requests on SIGTERM and then re-raises the signal with the previous handler
back in place, which would end the process "killed by SIGTERM". With a no-op handler installed
first, that re-raise is harmless and a clean stop exits 0, like the gRPC services.

With `workers` above 1, uvicorn's supervisor runs that many processes accepting on one socket
(each builds its own app from `factory`, an import string), replaces one that dies, and on
SIGTERM or SIGINT stops them all, each draining as above: one Python process serves one core.
Their Prometheus samples are shared, so a scrape of any reports them all.
"""

from __future__ import annotations

import math
import signal
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from meshplate_core import heap
from meshplate_core.metrics import shared_by_processes


def _ignore(_signum: int, _frame: Any) -> None:
    return None


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


def serve_http(app: Any, *, host: str, port: int, grace_s: float, http: str = "httptools") -> None:
    """Serve `app` on uvloop until SIGTERM or SIGINT, then drain for up to `grace_s` (the heap
    built so far settled first: meshplate_core.heap)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore)
    heap.settle()
    uvicorn.Server(_config(app, host=host, port=port, grace_s=grace_s, http=http)).run()


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
