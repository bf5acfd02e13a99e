"""The gRPC calls the jobs make (auth's purge, the users service's lists), behind the jobs' own
interfaces, so the job kinds know nothing of gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from meshplate.auth.v1 import auth_pb2, auth_pb2_grpc
from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.channels import Caller, open_channel
from meshplate_core.mtls import Tls
from worker.kinds import PermanentError

PAGE_SIZE = 100
# Answers that may change on a later attempt; any other failure is the job's for good.
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)
AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
USERS_SERVICE = users_pb2.DESCRIPTOR.services_by_name["UsersService"]


class Peer:
    """A channel to one service (workload `server`), opened on first use: a grpc.aio channel belongs to the event
    loop it was made in, and the worker is composed before uvicorn starts its loop. Its calls
    go through `call` (the deadline and metadata of every call: meshplate_core.channels.Caller)."""

    def __init__(
        self,
        target: str,
        service: ServiceDescriptor,
        server: str,
        *,
        tls: Tls | None,
        timeout_s: float,
    ) -> None:
        self._target = target
        self._service = service
        self._server = server
        self._tls = tls
        self.timeout_s = timeout_s
        self.call = Caller(timeout_s=timeout_s)
        self._channel: grpc.aio.Channel | None = None

    def channel(self) -> grpc.aio.Channel:
        """The channel, opened now if it is not yet."""
        if self._channel is None:
            self._channel = open_channel(
                self._target,
                services=[self._service],
                timeout_s=self.timeout_s,
                tls=self._tls,
                server=self._server,
            )
        return self._channel

    async def ready(self) -> None:
        """Once the service can be reached (its channel connected)."""
        await self.channel().channel_ready()

    async def close(self) -> None:
        """Close the channel, if it was opened."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


@contextmanager
def _call(name: str) -> Iterator[None]:
    """A failed call as one line: ConnectionError when it may pass later, PermanentError else."""
    try:
        yield
    except grpc.aio.AioRpcError as exc:
        text = f"{name}: {exc.code().name}: {exc.details()}"
        if exc.code() in _TRANSIENT:
            raise ConnectionError(text) from None
        raise PermanentError(text) from None


class AuthCalls:
    """auth's maintenance RPC (implements kinds.purge.ExpiredTokens)."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer

    async def purge_expired(self) -> tuple[int, int]:
        """(revocations removed, refresh families removed)."""
        stub = auth_pb2_grpc.AuthServiceStub(self._peer.channel())
        with _call("auth PurgeExpired"):
            reply = await self._peer.call(stub.PurgeExpired, auth_pb2.PurgeExpiredRequest())
        return reply.revocations_removed, reply.families_removed


class UsersCalls:
    """The users service's lists, page by page (implements kinds.report.Directory)."""

    def __init__(self, peer: Peer) -> None:
        self._peer = peer

    async def tiers(self) -> AsyncIterator[tuple[int, str]]:
        """Every tier as (id, name)."""
        stub = users_pb2_grpc.UsersServiceStub(self._peer.channel())
        async for tier in self._every(
            "users ListTiers", stub.ListTiers, users_pb2.ListTiersRequest, "tiers"
        ):
            yield tier.id, tier.name

    async def user_tiers(self) -> AsyncIterator[int | None]:
        """The tier id of every live user (None: no tier)."""
        stub = users_pb2_grpc.UsersServiceStub(self._peer.channel())
        async for user in self._every(
            "users ListUsers", stub.ListUsers, users_pb2.ListUsersRequest, "users"
        ):
            yield user.tier_id if user.HasField("tier_id") else None

    async def _every(
        self, name: str, rpc: Any, request: Callable[..., Any], field: str
    ) -> AsyncIterator[Any]:
        """Every item of a paged list RPC, a page of PAGE_SIZE at a time."""
        page = 1
        while True:
            with _call(name):
                reply = await self._peer.call(rpc, request(page=page, items_per_page=PAGE_SIZE))
            items = getattr(reply, field)
            for item in items:
                yield item
            if len(items) < PAGE_SIZE:
                return
            page += 1
