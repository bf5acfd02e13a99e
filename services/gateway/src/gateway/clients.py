"""One small client per peer: it owns the stub, the deadline and the request id of each call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.schemas import UserCreate, UserRead
from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.interceptors import REQUEST_ID_KEY
from meshplate_core.logging import request_id


def call_metadata() -> tuple[tuple[str, str], ...]:
    """Metadata every outgoing call carries: the request id of the request being served."""
    rid = request_id.get()
    return ((REQUEST_ID_KEY, rid),) if rid else ()


def to_user_read(user: users_pb2.User, *, with_email: bool) -> UserRead:
    """The REST view of a user; the e-mail address only when the caller may see it."""
    return UserRead(
        id=user.id,
        name=user.name,
        username=user.username,
        email=user.email if with_email else None,
        profile_image_url=user.profile_image_url if user.HasField("profile_image_url") else None,
        tier_id=user.tier_id if user.HasField("tier_id") else None,
    )


class UsersClient:
    """Calls to the users service."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float) -> None:
        self._stub = users_pb2_grpc.UsersServiceStub(channel)
        self._timeout_s = timeout_s

    async def create_user(self, body: UserCreate) -> UserRead:
        """Register a user; the answer shows the e-mail address to its owner."""
        reply = await self._stub.CreateUser(
            users_pb2.CreateUserRequest(
                name=body.name, username=body.username, email=body.email, password=body.password
            ),
            timeout=self._timeout_s,
            metadata=call_metadata(),
        )
        return to_user_read(reply.user, with_email=True)

    async def get_user(self, username: str, *, with_email: bool = False) -> UserRead:
        """The live user with this username."""
        reply = await self._stub.GetUser(
            users_pb2.GetUserRequest(username=username),
            timeout=self._timeout_s,
            metadata=call_metadata(),
        )
        return to_user_read(reply.user, with_email=with_email)


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
