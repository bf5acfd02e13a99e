"""Internal callers as another team's service would be: over mutual TLS, known by certificate,
allowed by the called service's table, acting for an end user only with that user's token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest

from meshplate.client import metadata
from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.channels import open_channel
from meshplate_core.mtls import Tls
from meshplate_core.pki import Authority

from .conftest import Stack
from .identity import (
    ADMIN,
    claims_of,
    forge,
    fresh_claims,
    kid_of,
    log_in,
    logout,
    sign_up,
    signing_key,
)

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


async def _anns_post_and_bobs_token(stack: Stack) -> tuple[int, str]:
    """ann's post written through the REST API, and bob's access token."""
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
    return int(created.json()["id"]), bob_token


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
        by_worker = await _code(worker.UpdateUser(rename, metadata=metadata(token=admin_token)))
        by_stranger = await _code(billing.UpdateUser(rename, metadata=metadata(token=admin_token)))
        # Nor may they read what only the gateway reads.
        read_by_stranger = await _code(billing.GetUser(users_pb2.GetUserRequest(id=ann["id"])))
    async with _users_as(stack, "gateway") as gateway:
        anonymous = await _code(gateway.UpdateUser(rename))
        as_bob = await _code(gateway.UpdateUser(rename, metadata=metadata(token=bob_token)))
        as_ann = await gateway.UpdateUser(rename, metadata=metadata(token=ann_token))

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
    post_id, bob_token = await _anns_post_and_bobs_token(stack)
    async with _users_as(stack, "gateway") as gateway:
        code = await _code(
            gateway.DeletePost(
                users_pb2.DeletePostRequest(id=post_id, author_username="ann"),
                metadata=metadata(token=bob_token),
            )
        )

    assert code is grpc.StatusCode.PERMISSION_DENIED


# One RPC of each service, its request empty: (address key, method, workload allowed to call it).
PROBES = {
    "auth": "/meshplate.auth.v1.AuthService/GetJwks",
    "users": "/meshplate.users.v1.UsersService/ListTiers",
    "ratelimit": "/meshplate.ratelimit.v1.RateLimitService/ListRules",
}


async def _raw_call(stack: Stack, name: str, tls: Tls | None, method: str) -> grpc.StatusCode:
    """The status of `method` called with an empty request, as `tls`'s workload (or none)."""
    target = f"127.0.0.1:{stack.ports[name]}"
    channel = (
        grpc.aio.insecure_channel(target)
        if tls is None
        else grpc.aio.secure_channel(
            target, tls.channel_credentials(), [("grpc.ssl_target_name_override", name)]
        )
    )
    try:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        await call(b"", timeout=3)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        await channel.close()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("name", list(PROBES))
async def test_every_service_refuses_strangers_and_callers_its_table_does_not_name(
    stack: Stack, name: str, tmp_path: Path
) -> None:
    stranger = Tls(Authority.create().issue("gateway").save(tmp_path / "stranger"))
    method = PROBES[name]

    without_certificate = await _raw_call(stack, name, None, method)
    other_ca = await _raw_call(stack, name, stranger, method)
    not_named = await _raw_call(stack, name, stack.workload_tls("billing"), method)
    gateway = await _raw_call(stack, name, stack.workload_tls("gateway"), method)

    assert without_certificate is other_ca is grpc.StatusCode.UNAVAILABLE
    assert not_named is grpc.StatusCode.PERMISSION_DENIED
    # Past the table (a ratelimit ListRules without a tier is an argument error, say).
    assert gateway not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAVAILABLE)


async def test_the_old_actor_field_of_a_superuser_makes_no_one_a_superuser(stack: Stack) -> None:
    post_id, bob_token = await _anns_post_and_bobs_token(stack)
    # DeletePostRequest as a client of the old contract sends it: field 1, an Actor naming the
    # first superuser (user_id 1, is_superuser true), then a hard delete of ann's post.
    actor = b"\x08\x01\x10\x01"
    request = users_pb2.DeletePostRequest(id=post_id, author_username="ann", hard=True)
    payload = b"\x0a" + bytes([len(actor)]) + actor + request.SerializeToString()

    channel = open_channel(
        f"127.0.0.1:{stack.ports['users']}",
        services=[USERS],
        timeout_s=5,
        tls=stack.workload_tls("gateway"),
        server="users",
    )
    try:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/meshplate.users.v1.UsersService/DeletePost"
        )
        code = await _code(call(payload, metadata=metadata(token=bob_token), timeout=5))
    finally:
        await channel.close()
    async with stack.client() as client:
        still = await client.get(f"/api/v1/ann/post/{post_id}")

    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert still.status_code == 200


async def test_an_expired_or_revoked_forwarded_token_is_refused(stack: Stack) -> None:
    async with stack.client() as client:
        ann = await sign_up(client, "ann")
        ann_token, _ = await log_in(client, "ann")
        kept, _ = await log_in(client, "ann")
        assert (await logout(client, ann_token)).status_code == 200
    expired = forge(
        signing_key(stack.signing_key_file),
        fresh_claims(claims_of(kept), exp=int(time.time()) - 60),
        kid=kid_of(kept),
    )
    rename = users_pb2.UpdateUserRequest(id=ann["id"], name="Annie")

    async with _users_as(stack, "gateway") as gateway:
        too_late = await _code(gateway.UpdateUser(rename, metadata=metadata(token=expired)))
        # A logout reaches the users service over auth's revocation stream, in milliseconds.
        deadline = time.monotonic() + 1
        while True:
            try:
                await gateway.UpdateUser(rename, metadata=metadata(token=ann_token))
            except grpc.aio.AioRpcError as exc:
                revoked = exc.code()
                break
            assert time.monotonic() < deadline, "a revoked token still acted after a second"
            await asyncio.sleep(0.02)
        fine = await gateway.UpdateUser(rename, metadata=metadata(token=kept))

    assert too_late is revoked is grpc.StatusCode.UNAUTHENTICATED
    assert fine.user.name == "Annie"
