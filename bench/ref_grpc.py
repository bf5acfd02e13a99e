"""`ref-grpc`: the bare grpc.aio unary server ratelimit's CheckLimit is compared with. It serves
the same RPC (same messages, same method path) and answers every call at once with a fixed
decision: no interceptor, no Redis, the stock asyncio loop; over mutual TLS as ratelimit is, when
given a TLS folder (meshplate_core.mtls), so the two differ by what the service does, not by
the transport.

`python -m bench.ref_grpc <port> [<tls folder>]` serves it; `serving()` runs that for a block.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc

from bench.child import serving as serving_child
from meshplate.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from meshplate_core.mtls import Tls
from meshplate_testing.servers import free_port


class Echo(ratelimit_pb2_grpc.RateLimitServiceServicer):
    """Allows every call."""

    async def CheckLimit(  # noqa: N802 (the proto's name)
        self, request: ratelimit_pb2.CheckLimitRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> ratelimit_pb2.CheckLimitResponse:
        return ratelimit_pb2.CheckLimitResponse(allowed=True, limit=10, remaining=9, reset_s=60)


async def serve(port: int, tls: Tls | None) -> None:
    """Serve until SIGTERM or SIGINT."""
    server = grpc.aio.server()
    ratelimit_pb2_grpc.add_RateLimitServiceServicer_to_server(Echo(), server)
    address = f"127.0.0.1:{port}"
    if tls is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, tls.server_credentials())
    await server.start()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop(grace=None)


@asynccontextmanager
async def serving(tls: Tls | None) -> AsyncIterator[tuple[int, int]]:
    """The reference server for a block: (its port, its pid)."""
    port = free_port()
    argv = [sys.executable, "-m", "bench.ref_grpc", str(port)]
    async with serving_child([*argv, *([str(tls.folder)] if tls else [])], port=port) as pid:
        yield port, pid


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), Tls(Path(sys.argv[2])) if len(sys.argv) > 2 else None))
