"""Metrics on a real gRPC server and over real HTTP."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import grpc
import httpx
import pytest
from prometheus_client import CollectorRegistry

from meshplate_core.errors import NotFoundError
from meshplate_core.grpc_server import start
from meshplate_core.interceptors import Context
from meshplate_core.metrics import RpcMetrics, export_tallies, exposed

from .conftest import PROBE, Behavior, Probe, register_probe


async def test_every_rpc_is_counted_by_its_final_status_and_timed() -> None:
    async def fine(request: bytes, context: Context) -> bytes:
        return request

    async def missing(request: bytes, context: Context) -> bytes:
        raise NotFoundError("no such thing")

    async def broken(request: bytes, context: Context) -> bytes:
        raise RuntimeError("bug")

    registry = CollectorRegistry()
    behaviors: dict[str, Behavior] = {"Fine": fine, "Missing": missing, "Broken": broken}
    running = await start(
        lambda server: register_probe(server, behaviors),
        service_name=PROBE,
        metrics=RpcMetrics(registry),
    )
    probe = Probe(running, grpc.aio.insecure_channel(f"127.0.0.1:{running.port}"))
    try:
        for _ in range(2):
            await probe.call("Fine")
        for method in ("Missing", "Broken"):
            with pytest.raises(grpc.aio.AioRpcError):
                await probe.call(method)
    finally:
        await probe.channel.close()
        await running.server.stop(grace=None)

    def handled(method: str, code: str) -> float | None:
        return registry.get_sample_value(
            "grpc_server_handled_total",
            {"grpc_service": PROBE, "grpc_method": method, "grpc_code": code},
        )

    assert handled("Fine", "OK") == 2
    assert handled("Missing", "NOT_FOUND") == 1
    assert handled("Broken", "INTERNAL") == 1
    count = registry.get_sample_value(
        "grpc_server_handling_seconds_count", {"grpc_service": PROBE, "grpc_method": "Fine"}
    )
    assert count == 2


@dataclass
class Tallies:
    hits: int = 0
    misses: int = 0


async def test_tallies_are_read_at_each_scrape_over_http() -> None:
    registry = CollectorRegistry()
    tallies = Tallies()
    export_tallies(registry, "things", "What happened to things.", label="event", tallies=tallies)
    with exposed(registry, host="127.0.0.1", port=0) as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            before = (await client.get("/metrics")).text
            tallies.hits += 3
            after = (await client.get("/metrics")).text

    assert 'things_total{event="hits"} 0.0' in before
    assert 'things_total{event="hits"} 3.0' in after
    assert 'things_total{event="misses"} 0.0' in after


async def test_a_call_past_its_deadline_is_counted_as_such_not_as_a_failure() -> None:
    async def slow(request: bytes, context: Context) -> bytes:
        await asyncio.sleep(2)
        return request

    registry = CollectorRegistry()
    behaviors: dict[str, Behavior] = {"Slow": slow}
    running = await start(
        lambda server: register_probe(server, behaviors),
        service_name=PROBE,
        metrics=RpcMetrics(registry),
    )
    probe = Probe(running, grpc.aio.insecure_channel(f"127.0.0.1:{running.port}"))
    try:
        rpc: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = probe.channel.unary_unary(
            f"/{PROBE}/Slow"
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await rpc(b"", timeout=0.2)
        async with asyncio.timeout(5):
            while (
                registry.get_sample_value(
                    "grpc_server_handling_seconds_count",
                    {"grpc_service": PROBE, "grpc_method": "Slow"},
                )
                is None
            ):
                await asyncio.sleep(0.02)
    finally:
        await probe.channel.close()
        await running.server.stop(grace=None)

    assert err.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    labels = {"grpc_service": PROBE, "grpc_method": "Slow"}
    assert (
        registry.get_sample_value(
            "grpc_server_handled_total", {**labels, "grpc_code": "DEADLINE_EXCEEDED"}
        )
        == 1
    )
    assert (
        registry.get_sample_value("grpc_server_handled_total", {**labels, "grpc_code": "INTERNAL"})
        is None
    )
