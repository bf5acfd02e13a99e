from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from meshplate_core.channels import LIVENESS
from meshplate_core.grpc_server import serve_until_terminated, watch_health
from meshplate_core.interceptors import Context
from meshplate_testing.servers import free_port

from .conftest import PROBE, ProbeFactory, register_probe

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def _status(channel: grpc.aio.Channel, service: str = PROBE) -> int:
    stub: Any = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(reply.status)


async def _eventually(predicate: Any, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_started_server_reports_serving_for_its_service_and_overall(
    probe_server: ProbeFactory,
) -> None:
    probe = await probe_server({})

    statuses = [await _status(probe.channel), await _status(probe.channel, "")]

    assert statuses == [SERVING, SERVING]


async def test_reflection_lists_the_service(probe_server: ProbeFactory) -> None:
    probe = await probe_server({})
    # The reflection stubs are typed for synchronous channels only.
    stub: Any = reflection_pb2_grpc.ServerReflectionStub(cast(Any, probe.channel))

    async def requests() -> Any:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    replies = [reply async for reply in stub.ServerReflectionInfo(requests())]

    names = {service.name for service in replies[0].list_services_response.service}
    assert {PROBE, "grpc.health.v1.Health"} <= names


async def test_health_follows_the_check_both_ways(probe_server: ProbeFactory) -> None:
    probe = await probe_server({})
    database_up = True

    async def check() -> None:
        if not database_up:
            raise ConnectionError("database unreachable")

    watcher = asyncio.create_task(watch_health(probe.running, check, interval_s=0.05))
    try:
        await _eventually(lambda: _is(probe.channel, SERVING))
        database_up = False
        await _eventually(lambda: _is(probe.channel, NOT_SERVING))
        # Unready, but alive: liveness probes must not restart a pod for its database.
        assert await _status(probe.channel, LIVENESS) == SERVING
        database_up = True
        await _eventually(lambda: _is(probe.channel, SERVING))
    finally:
        watcher.cancel()


async def _is(channel: grpc.aio.Channel, status: int) -> bool:
    return await _status(channel) == status


async def test_sigterm_reports_not_serving_and_lets_in_flight_calls_finish() -> None:
    port = free_port()
    release = asyncio.Event()
    started = asyncio.Event()

    async def slow(request: bytes, context: Context) -> bytes:
        started.set()
        await release.wait()
        return b"done"

    async def healthy() -> None:
        return None

    server = asyncio.create_task(
        serve_until_terminated(
            lambda s: register_probe(s, {"Slow": slow}),
            service_name=PROBE,
            host="127.0.0.1",
            port=port,
            grace_s=5.0,
            max_connection_age_s=300.0,
            check=healthy,
            check_interval_s=0.05,
            drain_s=0.5,
        )
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await _eventually(lambda: _is(channel, SERVING))
        slow_rpc: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            f"/{PROBE}/Slow"
        )
        in_flight = asyncio.ensure_future(slow_rpc(b"", timeout=10))
        await started.wait()

        os.kill(os.getpid(), signal.SIGTERM)
        await _eventually(lambda: _is(channel, NOT_SERVING))
        release.set()

        assert await in_flight == b"done"
    async with asyncio.timeout(5):
        await server


async def test_sigterm_with_nothing_in_flight_stops_at_once() -> None:
    port = free_port()

    async def healthy() -> None:
        return None

    server = asyncio.create_task(
        serve_until_terminated(
            lambda s: register_probe(s, {}),
            service_name=PROBE,
            host="127.0.0.1",
            port=port,
            grace_s=30.0,
            max_connection_age_s=300.0,
            check=healthy,
            check_interval_s=0.05,
        )
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await _eventually(lambda: _is(channel, SERVING))

    os.kill(os.getpid(), signal.SIGTERM)

    async with asyncio.timeout(2):
        await server


@pytest.mark.parametrize("failure", [ConnectionError("refused"), TimeoutError()])
async def test_check_failures_of_any_kind_mean_not_serving(
    probe_server: ProbeFactory, failure: Exception
) -> None:
    probe = await probe_server({})

    async def check() -> None:
        raise failure

    watcher = asyncio.create_task(watch_health(probe.running, check, interval_s=0.05))
    try:
        await _eventually(lambda: _is(probe.channel, NOT_SERVING))
    finally:
        watcher.cancel()
