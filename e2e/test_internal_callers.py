"""Internal callers as another team's service would be: over mutual TLS, known by certificate,
allowed by the called service's table, acting for an end user only with that user's token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import grpc
import pytest

from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.channels import AUTHORIZATION, open_channel
from meshplate_core.mtls import Tls
from meshplate_core.pki import Authority

from .conftest import Stack
from .identity import ADMIN, log_in, sign_up

if TYPE_CHECKING:
    from meshplate.users.v1.users_pb2_grpc import UsersServiceAsyncStub

USERS = users_pb2.DESCRIPTOR.services_by_name["UsersService"]


@asynccontextmanager
async def _users_as(stack: Stack, workload: str) -> AsyncIterator[UsersServiceAsyncStub]:
    channel = open_channel(
        f"127.0.0.1:{stack.ports['users']}",
        services=[USERS],
        timeout_s=5,
        tls=stack.workload_tls(workload),
        server="users",
    )
    try:
        yield users_pb2_grpc.UsersServiceStub(channel)
    finally:
        await channel.close()


def _as_user(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTHORIZATION, f"Bearer {token}"),)


async def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]  # a call of a stub
    return err.value.code()


async def test_a_write_needs_an_allowed_workload_and_the_users_own_token(stack: Stack) -> None:
    async with stack.client() as client:
        ann = await sign_up(client, "ann")
        await sign_up(client, "bob")
        ann_token, _ = await log_in(client, "ann")
        bob_token, _ = await log_in(client, "bob")
        admin_token, _ = await log_in(client, *ADMIN)
    rename = users_pb2.UpdateUserRequest(id=ann["id"], name="Annie")

    async with _users_as(stack, "worker") as worker, _users_as(stack, "billing") as billing:
        # Workloads the table does not name, even with the first superuser's real token.
        by_worker = await _code(worker.UpdateUser(rename, metadata=_as_user(admin_token)))
        by_stranger = await _code(billing.UpdateUser(rename, metadata=_as_user(admin_token)))
        # Nor may they read what only the gateway reads.
        read_by_stranger = await _code(billing.GetUser(users_pb2.GetUserRequest(id=ann["id"])))
    async with _users_as(stack, "gateway") as gateway:
        anonymous = await _code(gateway.UpdateUser(rename))
        as_bob = await _code(gateway.UpdateUser(rename, metadata=_as_user(bob_token)))
        as_ann = await gateway.UpdateUser(rename, metadata=_as_user(ann_token))

    assert by_worker is by_stranger is read_by_stranger is grpc.StatusCode.PERMISSION_DENIED
    assert anonymous is grpc.StatusCode.UNAUTHENTICATED
    assert as_bob is grpc.StatusCode.PERMISSION_DENIED
    assert as_ann.user.name == "Annie"


async def test_a_workload_of_another_ca_cannot_even_connect(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = Authority.create().issue("gateway").save(tmp_path_factory.mktemp("stranger"))
    channel = open_channel(
        f"127.0.0.1:{stack.ports['users']}",
        services=[USERS],
        timeout_s=2,
        tls=Tls(folder),
        server="users",
    )
    try:
        code = await _code(
            users_pb2_grpc.UsersServiceStub(channel).GetUser(users_pb2.GetUserRequest(id=1))
        )
    finally:
        await channel.close()

    assert code is grpc.StatusCode.UNAVAILABLE


async def test_the_rest_api_acts_through_the_forwarded_token(
    stack: Stack, workload_tls: Callable[[str], Tls]
) -> None:
    # A post written through the REST API is written as the caller: another user's token on the
    # same path is refused by the users service itself (the gateway's check aside).
    async with stack.client() as client:
        await sign_up(client, "ann")
        await sign_up(client, "bob")
        ann_token, _ = await log_in(client, "ann")
        bob_token, _ = await log_in(client, "bob")
        created = await client.post(
            "/api/v1/ann/post",
            json={"title": "Hello", "text": "Mine"},
            headers={"Authorization": f"Bearer {ann_token}"},
        )
        assert created.status_code == 201, created.text
        post_id = created.json()["id"]
    async with _users_as(stack, "gateway") as gateway:
        code = await _code(
            gateway.DeletePost(
                users_pb2.DeletePostRequest(id=post_id, author_username="ann"),
                metadata=_as_user(bob_token),
            )
        )

    assert code is grpc.StatusCode.PERMISSION_DENIED
