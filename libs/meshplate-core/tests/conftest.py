"""A real grpc.aio server, built by the core's bootstrap, serving a probe service of raw bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from meshplate_core.grpc_server import Running, start

PROBE = "test.Probe"
Behavior = Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]


def register_probe(server: grpc.aio.Server, behaviors: dict[str, Behavior]) -> None:
    """Serve each behaviour as the unary method /test.Probe/<name> (bytes in, bytes out)."""
    handlers: dict[str, grpc.RpcMethodHandler[bytes, bytes]] = {
        name: grpc.unary_unary_rpc_method_handler(fn) for name, fn in behaviors.items()
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(PROBE, handlers),))


class Probe:
    """A started probe server and a channel to it."""

    def __init__(self, running: Running, channel: grpc.aio.Channel) -> None:
        self.running = running
        self.channel = channel

    async def call(self, method: str, payload: bytes = b"", **kwargs: Any) -> bytes:
        """Call /test.Probe/<method>."""
        rpc: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(
            f"/{PROBE}/{method}"
        )
        reply: bytes = await rpc(payload, timeout=5, **kwargs)
        return reply


ProbeFactory = Callable[[dict[str, Behavior]], Awaitable[Probe]]


@pytest.fixture
async def probe_server() -> AsyncIterator[ProbeFactory]:
    """Starts probe servers on port 0 with the given behaviours; stops them after the test."""
    started: list[Probe] = []

    async def make(behaviors: dict[str, Behavior]) -> Probe:
        running = await start(lambda server: register_probe(server, behaviors), service_name=PROBE)
        probe = Probe(running, grpc.aio.insecure_channel(f"127.0.0.1:{running.port}"))
        started.append(probe)
        return probe

    yield make
    for probe in started:
        await probe.channel.close()
        await probe.running.server.stop(grace=None)
    await asyncio.sleep(0)
