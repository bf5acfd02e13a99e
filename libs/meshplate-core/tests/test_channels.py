from __future__ import annotations

from typing import Any

import grpc
import pytest

from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.channels import open_channel, service_config
from meshplate_core.grpc_server import start

USERS = users_pb2.DESCRIPTOR.services_by_name["UsersService"]
Context = grpc.aio.ServicerContext[Any, Any]


def test_only_rpcs_the_contract_marks_idempotent_are_retried() -> None:
    config = service_config([USERS], timeout_s=2.0)

    retried = {
        name["method"]
        for entry in config["methodConfig"]
        if "retryPolicy" in entry
        for name in entry["name"]
    }

    assert {"GetUser", "ListUsers", "UpdateUser", "DeleteUser"} <= retried
    assert {"CreateUser", "CreatePost", "CreateTier"}.isdisjoint(retried)


def test_every_rpc_has_a_default_deadline_and_round_robin() -> None:
    config = service_config([USERS], timeout_s=2.5)

    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert all(entry["timeout"] == "2.500s" for entry in config["methodConfig"])


class FlakyUsers(users_pb2_grpc.UsersServiceServicer):
    """Fails the first call of each RPC with UNAVAILABLE, then answers."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def _flaky(self, name: str, context: Context) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.calls[name] == 1:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

    async def GetUser(  # noqa: N802
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        await self._flaky("GetUser", context)
        return users_pb2.GetUserResponse(user=users_pb2.User(username=request.username))

    async def CreateUser(  # noqa: N802
        self, request: users_pb2.CreateUserRequest, context: Context
    ) -> users_pb2.CreateUserResponse:
        await self._flaky("CreateUser", context)
        return users_pb2.CreateUserResponse()


async def test_idempotent_call_is_retried_and_a_write_is_not() -> None:
    servicer = FlakyUsers()
    running = await start(
        lambda server: users_pb2_grpc.add_UsersServiceServicer_to_server(servicer, server),
        service_name=USERS.full_name,
    )
    channel = open_channel(f"127.0.0.1:{running.port}", services=[USERS], timeout_s=5.0)
    stub = users_pb2_grpc.UsersServiceStub(channel)
    try:
        reply = await stub.GetUser(users_pb2.GetUserRequest(username="ann"))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.CreateUser(users_pb2.CreateUserRequest())
    finally:
        await channel.close()
        await running.server.stop(grace=None)

    assert reply.user.username == "ann"
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == {"GetUser": 2, "CreateUser": 1}
