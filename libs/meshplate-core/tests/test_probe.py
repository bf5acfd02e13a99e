"""The container health probe against a real gRPC server and a real HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import CollectorRegistry

from meshplate_core.grpc_server import start
from meshplate_core.metrics import exposed
from meshplate_core.mtls import Tls
from meshplate_core.probe import main
from meshplate_testing.servers import free_port

from .conftest import PROBE, register_probe


async def test_grpc_probe_follows_the_health_status(monkeypatch: pytest.MonkeyPatch) -> None:
    # A plaintext server, as the probe is told by the workload's settings (test_mtls: over TLS).
    monkeypatch.setenv("GRPC_PLAINTEXT", "true")
    running = await start(lambda server: register_probe(server, {}), service_name=PROBE)
    target = f"127.0.0.1:{running.port}"
    try:
        serving = await asyncio.to_thread(main, ["grpc", target, PROBE])
        await running.set_serving(False)
        not_serving = await asyncio.to_thread(main, ["grpc", target, PROBE])
    finally:
        await running.server.stop(grace=None)
    gone = await asyncio.to_thread(main, ["grpc", target, PROBE])

    assert (serving, not_serving, gone) == (0, 1, 1)


async def test_http_probe_wants_a_200() -> None:
    with exposed(CollectorRegistry(), host="127.0.0.1", port=0) as port:
        ok = await asyncio.to_thread(main, ["http", f"http://127.0.0.1:{port}/metrics"])
    down = await asyncio.to_thread(main, ["http", f"http://127.0.0.1:{free_port()}/health"])

    assert (ok, down) == (0, 1)


def test_wrong_arguments_are_a_usage_error() -> None:
    assert main(["tcp", "x"]) == 2


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serving(context: ssl.SSLContext | None) -> Iterator[int]:
    """An HTTP server on a free port (HTTPS with `context`) answering 200 at /health."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_web_probe_takes_https_with_the_workloads_certificate_or_else_http(
    monkeypatch: pytest.MonkeyPatch, workload_tls: Callable[[str], Tls]
) -> None:
    # The gateway's image cannot know whether GATEWAY_HTTPS is on: one probe serves both.
    monkeypatch.setenv("TLS_DIR", str(workload_tls("gateway").folder))
    with _serving(workload_tls("gateway").http_server_context()) as https_port:
        over_https = await asyncio.to_thread(main, ["web", f"127.0.0.1:{https_port}/health"])
        missing = await asyncio.to_thread(main, ["web", f"127.0.0.1:{https_port}/nothing"])
        monkeypatch.delenv("TLS_DIR")
        monkeypatch.setenv("GRPC_PLAINTEXT", "true")
        without_certificate = await asyncio.to_thread(
            main, ["web", f"127.0.0.1:{https_port}/health"]
        )
    monkeypatch.setenv("TLS_DIR", str(workload_tls("gateway").folder))
    monkeypatch.delenv("GRPC_PLAINTEXT")
    with _serving(None) as http_port:
        over_http = await asyncio.to_thread(main, ["web", f"127.0.0.1:{http_port}/health"])
    down = await asyncio.to_thread(main, ["web", f"127.0.0.1:{free_port()}/health"])

    assert (over_https, missing, without_certificate, over_http, down) == (0, 1, 1, 0, 1)
