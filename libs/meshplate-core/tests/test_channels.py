from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.channels import KEEPALIVE_S, Caller, open_channel
from meshplate_core.grpc_server import start
from meshplate_core.interceptors import Context
from meshplate_core.logging import request_id
from meshplate_core.mtls import Tls
from meshplate_core.tokens import Claims
from meshplate_core.tracing import extract, span

if TYPE_CHECKING:
    from meshplate.users.v1.users_pb2_grpc import UsersServiceAsyncStub

USERS = users_pb2.DESCRIPTOR.services_by_name["UsersService"]


class SlowUsers(users_pb2_grpc.UsersServiceServicer):
    """Answers GetUser after the number of seconds named by the username."""

    async def GetUser(  # noqa: N802
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        await asyncio.sleep(float(request.username))
        return users_pb2.GetUserResponse(user=users_pb2.User(username=request.username))


async def test_a_short_timeout_is_kept_not_cut_and_still_ends_a_late_call() -> None:
    running = await start(
        lambda server: users_pb2_grpc.add_UsersServiceServicer_to_server(SlowUsers(), server),
        service_name=USERS.full_name,
    )
    channel = open_channel(
        f"127.0.0.1:{running.port}", services=[USERS], timeout_s=0.5, tls=None, server="users"
    )
    stub = users_pb2_grpc.UsersServiceStub(channel)
    try:
        # Both with the channel's default and with the call's own deadline of that length.
        quick = await stub.GetUser(users_pb2.GetUserRequest(username="0.1"))
        also_quick = await stub.GetUser(users_pb2.GetUserRequest(username="0.1"), timeout=0.5)
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await stub.GetUser(users_pb2.GetUserRequest(username="2"), timeout=0.5)
    finally:
        await channel.close()
        await running.server.stop(grace=None)

    assert (quick.user.username, also_quick.user.username) == ("0.1", "0.1")
    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


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


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[FlakyUsers, UsersServiceAsyncStub]]:
    """A server whose every RPC fails once with UNAVAILABLE, and a stub on a channel to it."""
    servicer = FlakyUsers()
    running = await start(
        lambda server: users_pb2_grpc.add_UsersServiceServicer_to_server(servicer, server),
        service_name=USERS.full_name,
    )
    channel = open_channel(
        f"127.0.0.1:{running.port}", services=[USERS], timeout_s=5.0, tls=None, server="users"
    )
    yield servicer, users_pb2_grpc.UsersServiceStub(channel)
    await channel.close()
    await running.server.stop(grace=None)


async def test_idempotent_call_is_retried_and_a_write_is_not(
    flaky: tuple[FlakyUsers, UsersServiceAsyncStub],
) -> None:
    servicer, stub = flaky

    reply = await stub.GetUser(users_pb2.GetUserRequest(username="ann"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateUser(users_pb2.CreateUserRequest())

    assert reply.user.username == "ann"
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == {"GetUser": 2, "CreateUser": 1}


async def _idle_channel_state_changes(
    keepalive_s: float, min_ping_interval_s: float, idle_s: float
) -> bool:
    # Whether an idle channel's connection changed state (a GOAWAY closes it) within `idle_s`.
    running = await start(
        lambda server: None, service_name=USERS.full_name, min_ping_interval_s=min_ping_interval_s
    )
    channel = open_channel(
        f"127.0.0.1:{running.port}",
        services=[USERS],
        timeout_s=5.0,
        keepalive_s=keepalive_s,
        tls=None,
        server="users",
    )
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        await stub.Check(health_pb2.HealthCheckRequest())
        assert channel.get_state() is grpc.ChannelConnectivity.READY
        try:
            async with asyncio.timeout(idle_s):
                await channel.wait_for_state_change(grpc.ChannelConnectivity.READY)
        except TimeoutError:
            return False
        return True
    finally:
        await channel.close()
        await running.server.stop(grace=None)


async def test_an_idle_channel_keeps_its_connection_through_its_keepalive_pings() -> None:
    # The production policy (ping every KEEPALIVE_S, accepted twice as often), ten times faster:
    # ten pings on a connection with no call.
    scale = 10 / KEEPALIVE_S

    changed = await _idle_channel_state_changes(
        keepalive_s=KEEPALIVE_S * scale, min_ping_interval_s=KEEPALIVE_S / 2 * scale, idle_s=10
    )

    assert not changed


async def test_pings_closer_than_the_server_accepts_get_the_connection_closed() -> None:
    # What the test above would see with a policy that disagrees (the server's 5-minute default).
    assert await _idle_channel_state_changes(keepalive_s=1, min_ping_interval_s=300, idle_s=10)


class NamedUsers(users_pb2_grpc.UsersServiceServicer):
    """Answers GetUser with its own name, to see which replica took a call."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def GetUser(  # noqa: N802
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        return users_pb2.GetUserResponse(user=users_pb2.User(username=self.name))


async def test_calls_spread_over_replicas_and_leave_one_that_reports_it_is_stopping(
    workload_tls: Callable[[str], Tls],
) -> None:
    # Over mutual TLS, as in production: client-side health checking watches each replica on
    # the same secure connections.
    def serving(name: str) -> Callable[[grpc.aio.Server], None]:
        return lambda server: users_pb2_grpc.add_UsersServiceServicer_to_server(
            NamedUsers(name), server
        )

    replicas = [
        await start(serving(name), service_name=USERS.full_name, tls=workload_tls("users"))
        for name in ("a", "b")
    ]
    target = "ipv4:" + ",".join(f"127.0.0.1:{replica.port}" for replica in replicas)
    channel = open_channel(
        target, services=[USERS], timeout_s=2, tls=workload_tls("gateway"), server="users"
    )
    stub = users_pb2_grpc.UsersServiceStub(channel)

    async def served_by() -> list[str]:
        replies = [await stub.GetUser(users_pb2.GetUserRequest(username="x")) for _ in range(20)]
        return sorted({reply.user.username for reply in replies})

    try:
        both = await served_by()
        # What a stopping server reports first (grpc_server.serve_until_terminated).
        await replicas[0].health.enter_graceful_shutdown()
        async with asyncio.timeout(5):
            while await served_by() != ["b"]:
                await asyncio.sleep(0.05)
        after = await served_by()
    finally:
        await channel.close()
        for replica in replicas:
            await replica.server.stop(grace=None)

    assert both == ["a", "b"]
    assert after == ["b"]


class EchoUsers(users_pb2_grpc.UsersServiceServicer):
    """Answers GetUser with the metadata it came with (name: the request id, email: the
    authorization, profile_image_url: the traceparent), after `username` seconds."""

    async def GetUser(  # noqa: N802
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        await asyncio.sleep(float(request.username or 0))
        seen = {key: str(value) for key, value in context.invocation_metadata() or ()}
        return users_pb2.GetUserResponse(
            user=users_pb2.User(
                name=seen.get("x-request-id", ""),
                email=seen.get("authorization", ""),
                profile_image_url=seen.get("traceparent", ""),
            )
        )


@pytest.fixture
async def echo() -> AsyncIterator[UsersServiceAsyncStub]:
    running = await start(
        lambda server: users_pb2_grpc.add_UsersServiceServicer_to_server(EchoUsers(), server),
        service_name=USERS.full_name,
    )
    channel = open_channel(
        f"127.0.0.1:{running.port}", services=[USERS], timeout_s=5.0, tls=None, server="users"
    )
    yield users_pb2_grpc.UsersServiceStub(channel)
    await channel.close()
    await running.server.stop(grace=None)


def _claims(token: str) -> Claims:
    return Claims(
        user_id=1,
        token_id="t",
        type="access",
        issued_at=0,
        expires_at=0,
        tier_id=None,
        is_superuser=False,
        family_id=None,
        token=token,
    )


async def test_a_caller_sends_the_request_id_trace_and_the_users_token(
    echo: UsersServiceAsyncStub,
) -> None:
    call = Caller(timeout_s=2)
    parent = extract({"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"})
    rid = request_id.set("req-1")
    try:
        with span("work", parent=parent):
            reply = await call(echo.GetUser, users_pb2.GetUserRequest(), user=_claims("tok"))
    finally:
        request_id.reset(rid)

    assert reply.user.name == "req-1"
    assert reply.user.email == "Bearer tok"
    assert reply.user.profile_image_url.startswith(f"00-{'ab' * 16}-")


async def test_a_call_made_for_no_request_carries_no_ones_metadata(
    echo: UsersServiceAsyncStub,
) -> None:
    # What a batch for many requests does (meshplate_core.batching runs it in an empty context).
    call = Caller(timeout_s=2)
    rid = request_id.set("req-1")
    try:
        reply = await asyncio.get_running_loop().create_task(
            call(echo.GetUser, users_pb2.GetUserRequest()), context=contextvars.Context()
        )
    finally:
        request_id.reset(rid)

    assert (reply.user.name, reply.user.email, reply.user.profile_image_url) == ("", "", "")


async def test_a_caller_ends_a_call_at_its_deadline_or_the_time_left_if_shorter(
    echo: UsersServiceAsyncStub,
) -> None:
    call = Caller(timeout_s=0.3)
    loop = asyncio.get_running_loop()

    started = loop.time()
    with pytest.raises(grpc.aio.AioRpcError) as late:
        await call(echo.GetUser, users_pb2.GetUserRequest(username="2"))
    own_deadline = loop.time() - started
    started = loop.time()
    with pytest.raises(grpc.aio.AioRpcError) as hurried:
        await call(echo.GetUser, users_pb2.GetUserRequest(username="2"), within_s=0.05)
    time_left = loop.time() - started
    in_time = await call(echo.GetUser, users_pb2.GetUserRequest(username="0.05"), within_s=5)

    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert hurried.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert 0.25 < own_deadline < 1.0
    assert time_left < 0.25
    assert in_time.user.name == ""


async def test_a_caller_gets_idempotent_calls_retried_and_writes_not(
    flaky: tuple[FlakyUsers, UsersServiceAsyncStub],
) -> None:
    servicer, stub = flaky
    call = Caller(timeout_s=2)

    reply = await call(stub.GetUser, users_pb2.GetUserRequest(username="ann"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(stub.CreateUser, users_pb2.CreateUserRequest())

    assert reply.user.username == "ann"
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE
    assert servicer.calls == {"GetUser": 2, "CreateUser": 1}
