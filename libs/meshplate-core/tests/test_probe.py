"""The container health probe against a real gRPC server and a real HTTP server."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from meshplate_core.grpc_server import start
from meshplate_core.metrics import exposed
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
