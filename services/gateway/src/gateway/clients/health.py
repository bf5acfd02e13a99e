"""Readiness of the services through the standard gRPC health service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


class _HealthCheck(Protocol):
    # types-grpcio-health-checking types the server side only; this is the client's one call.
    def Check(  # noqa: N802
        self, request: health_pb2.HealthCheckRequest, *, timeout: float
    ) -> Awaitable[health_pb2.HealthCheckResponse]: ...


class HealthClient:
    """Asks each service, through the standard health service, whether it is serving."""

    def __init__(self, channels: dict[str, tuple[grpc.aio.Channel, str]], *, timeout_s: float):
        # name -> (channel, the gRPC service name whose health that service reports)
        self._stubs = {
            name: (cast(_HealthCheck, health_pb2_grpc.HealthStub(channel)), service)
            for name, (channel, service) in channels.items()
        }
        self._timeout_s = timeout_s

    async def check_all(self) -> dict[str, str]:
        """name -> "ok", or why the service is not ready."""
        names = list(self._stubs)
        results = await asyncio.gather(*(self._check(name) for name in names))
        return dict(zip(names, results, strict=True))

    async def _check(self, name: str) -> str:
        stub, service = self._stubs[name]
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(service=service), timeout=self._timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code().name.lower()
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            return "ok"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status).lower()
