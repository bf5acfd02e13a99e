"""Mutual TLS and the callers' table, on real gRPC servers with certificates of a real CA."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.callers import Callers, granted
from meshplate_core.channels import open_channel
from meshplate_core.grpc_server import Running, start
from meshplate_core.interceptors import Context
from meshplate_core.metrics import RpcMetrics
from meshplate_core.mtls import CERT_FILE, Tls, TlsFilesError, caller, spiffe_id, workload_name
from meshplate_core.pki import Authority, ensure
from meshplate_core.probe import grpc_serving
from meshplate_core.renewal import RenewingChannel
from meshplate_core.settings import ServiceSettings

USERS = users_pb2.DESCRIPTOR.services_by_name["UsersService"]


class WhoAsks(users_pb2_grpc.UsersServiceServicer):
    """GetUser answers with the caller's workload name as the username."""

    async def GetUser(  # noqa: N802
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        return users_pb2.GetUserResponse(user=users_pb2.User(username=caller(context) or "-"))


def _table() -> Callers:
    return Callers.of(
        USERS,
        {
            method.name: {"gateway"} if method.name == "GetUser" else set()
            for method in USERS.methods
        },
    )


@pytest.fixture
async def users_server(
    workload_tls: Callable[[str], Tls],
) -> AsyncIterator[tuple[Running, RpcMetrics, CollectorRegistry]]:
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry)
    running = await start(
        lambda server: users_pb2_grpc.add_UsersServiceServicer_to_server(WhoAsks(), server),
        service_name=USERS.full_name,
        tls=workload_tls("users"),
        callers=[_table()],
        metrics=metrics,
    )
    yield running, metrics, registry
    await running.server.stop(grace=None)


async def _get_user(
    port: int, tls: Tls | None, *, server: str = "users"
) -> users_pb2.GetUserResponse:
    channel = open_channel(
        f"127.0.0.1:{port}", services=[USERS], timeout_s=2, tls=tls, server=server
    )
    try:
        reply: users_pb2.GetUserResponse = await users_pb2_grpc.UsersServiceStub(channel).GetUser(
            users_pb2.GetUserRequest(username="x"), timeout=2
        )
        return reply
    finally:
        await channel.close()


async def test_an_allowed_caller_is_served_and_known_by_its_certificate(
    users_server: tuple[Running, RpcMetrics, CollectorRegistry],
    workload_tls: Callable[[str], Tls],
) -> None:
    running, _, _ = users_server

    reply = await _get_user(running.port, workload_tls("gateway"))

    assert reply.user.username == "gateway"


async def test_another_workload_is_refused_logged_and_counted(
    users_server: tuple[Running, RpcMetrics, CollectorRegistry],
    workload_tls: Callable[[str], Tls],
    caplog: pytest.LogCaptureFixture,
) -> None:
    running, _, registry = users_server

    with caplog.at_level(logging.WARNING), pytest.raises(grpc.aio.AioRpcError) as refused:
        await _get_user(running.port, workload_tls("worker"))

    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "worker may not call /meshplate.users.v1.UsersService/GetUser" in str(
        refused.value.details()
    )
    assert any("worker" in r.getMessage() and "GetUser" in r.getMessage() for r in caplog.records)
    counted = registry.get_sample_value(
        "grpc_server_denied_total",
        {"grpc_service": USERS.full_name, "grpc_method": "GetUser", "caller": "worker"},
    )
    assert counted == 1


async def test_a_caller_without_a_certificate_of_the_ca_never_gets_past_the_handshake(
    users_server: tuple[Running, RpcMetrics, CollectorRegistry], tmp_path: Path
) -> None:
    running, _, _ = users_server
    # Same names, another CA: as a workload outside the mesh would have.
    stranger = Tls(Authority.create().issue("gateway").save(tmp_path / "stranger"))

    for tls in (None, stranger):
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await _get_user(running.port, tls)
        assert failed.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_a_client_refuses_a_server_that_is_not_the_workload_it_called(
    users_server: tuple[Running, RpcMetrics, CollectorRegistry],
    workload_tls: Callable[[str], Tls],
) -> None:
    running, _, _ = users_server

    with pytest.raises(grpc.aio.AioRpcError) as failed:
        # The gateway thinks this address is auth's; the certificate says users.
        await _get_user(running.port, workload_tls("gateway"), server="auth")

    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_health_is_open_to_every_workload_of_the_ca_and_the_probe_speaks_tls(
    users_server: tuple[Running, RpcMetrics, CollectorRegistry],
    workload_tls: Callable[[str], Tls],
) -> None:
    running, _, _ = users_server
    target = f"127.0.0.1:{running.port}"
    channel = open_channel(
        target, services=[USERS], timeout_s=2, tls=workload_tls("example"), server="users"
    )
    try:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=USERS.full_name), timeout=2)
    finally:
        await channel.close()

    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert await asyncio.to_thread(grpc_serving, target, USERS.full_name, workload_tls("users"))
    assert not await asyncio.to_thread(grpc_serving, target, USERS.full_name, None)


def _served_serial(port: int, tls: Tls) -> int:
    """The serial number of the certificate a new connection to `port` is shown."""
    context = ssl.create_default_context(cafile=str(tls.folder / "ca.crt"))
    context.check_hostname = False
    context.load_cert_chain(tls.folder / CERT_FILE, tls.folder / "tls.key")
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw) as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


async def test_a_renewed_certificate_is_served_to_the_next_connection(
    tmp_path: Path, workload_tls: Callable[[str], Tls]
) -> None:
    authority = Authority.create()
    folder = authority.issue("users").save(tmp_path / "users")
    client = Tls(authority.issue("gateway").save(tmp_path / "gateway"))
    running = await start(lambda server: None, service_name=USERS.full_name, tls=Tls(folder))
    try:
        before = await asyncio.to_thread(_served_serial, running.port, client)
        authority.issue("users").save(folder)
        renewed = x509.load_pem_x509_certificate((folder / CERT_FILE).read_bytes()).serial_number
        after = await asyncio.to_thread(_served_serial, running.port, client)
    finally:
        await running.server.stop(grace=None)

    assert before != renewed
    assert after == renewed


def test_every_rpc_must_be_in_a_table_and_grants_name_real_rpcs() -> None:
    with pytest.raises(ValueError, match="no callers for"):
        Callers.of(USERS, {"GetUser": {"gateway"}})
    with pytest.raises(ValueError, match="no RPC named Nope"):
        Callers.of(USERS, {**{m.name: set[str]() for m in USERS.methods}, "Nope": set()})
    with pytest.raises(ValueError, match="no RPC named Nope"):
        granted([_table()], {"billing": ["Nope"]})

    [table] = granted([_table()], {"billing": ["GetUser", "ListUsers"]})

    assert table.allowed("GetUser") == {"gateway", "billing"}
    assert table.allowed("ListUsers") == {"billing"}


def test_identities_are_spiffe_ids_of_the_meshplate_trust_domain() -> None:
    assert spiffe_id("gateway") == "spiffe://meshplate/gateway"
    assert workload_name("spiffe://meshplate/gateway") == "gateway"
    for other in ("spiffe://elsewhere/gateway", "spiffe://meshplate/a/b", "spiffe://meshplate/"):
        assert workload_name(other) is None


def test_certificates_are_made_once_and_reissued_for_a_new_ca(tmp_path: Path) -> None:
    first = ensure(tmp_path, ["users"])["users"]
    issued = (first / CERT_FILE).read_bytes()
    ensure(tmp_path, ["users"])
    kept = (first / CERT_FILE).read_bytes()
    (tmp_path / "ca" / "ca.key").unlink()
    ensure(tmp_path, ["users"])

    assert kept == issued
    assert (first / CERT_FILE).read_bytes() != issued
    assert oct((first / "tls.key").stat().st_mode & 0o777) == "0o600"


def test_settings_want_tls_or_an_explicit_plaintext_and_production_refuses_plaintext(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRETS_DIR", raising=False)
    with pytest.raises(TlsFilesError, match="TLS_DIR"):
        ServiceSettings(_env_file=None).tls()
    assert ServiceSettings(grpc_plaintext=True, _env_file=None).tls() is None
    with pytest.raises(ValidationError, match="GRPC_PLAINTEXT is refused"):
        ServiceSettings(environment="production", grpc_plaintext=True, _env_file=None)
    with pytest.raises(TlsFilesError, match=r"needs ca\.crt"):
        ServiceSettings(tls_dir=tmp_path, _env_file=None).tls()

    folder = ensure(tmp_path, ["users"])["users"]
    monkeypatch.setenv("SECRETS_DIR", str(folder))

    assert ServiceSettings(_env_file=None).tls() == Tls(folder)


class ClientSerial(users_pb2_grpc.UsersServiceServicer):
    """GetUser answers with the serial number of the caller's certificate as the username."""

    async def GetUser(  # noqa: N802
        self, request: users_pb2.GetUserRequest, context: Context
    ) -> users_pb2.GetUserResponse:
        [pem] = context.auth_context()["x509_pem_cert"]
        serial = x509.load_pem_x509_certificate(pem).serial_number
        return users_pb2.GetUserResponse(user=users_pb2.User(username=str(serial)))


async def test_a_client_calls_with_its_renewed_certificate_and_retires_the_old_channel(
    tmp_path: Path,
) -> None:
    authority = Authority.create()
    server_tls = Tls(authority.issue("users").save(tmp_path / "users"))
    client_folder = authority.issue("gateway").save(tmp_path / "gateway")
    running = await start(
        lambda server: users_pb2_grpc.add_UsersServiceServicer_to_server(ClientSerial(), server),
        service_name=USERS.full_name,
        tls=server_tls,
    )
    options = [("grpc.ssl_target_name_override", "users")]
    target = f"127.0.0.1:{running.port}"
    client = Tls(client_folder)
    opened: list[grpc.aio.Channel] = []

    def open_one() -> grpc.aio.Channel:
        opened.append(grpc.aio.secure_channel(target, client.channel_credentials(), options))
        return opened[-1]

    channel = RenewingChannel(open_one, client, check_s=0.05, grace_s=0.2)
    stub = users_pb2_grpc.UsersServiceStub(channel)
    request = users_pb2.GetUserRequest(username="x")

    def serial() -> str:
        return str(
            x509.load_pem_x509_certificate((client_folder / CERT_FILE).read_bytes()).serial_number
        )

    try:
        before, first = (await stub.GetUser(request, timeout=2)).user.username, serial()
        authority.issue("gateway").save(client_folder)
        await asyncio.sleep(0.1)
        after, renewed = (await stub.GetUser(request, timeout=2)).user.username, serial()
        await asyncio.sleep(0.5)
        old_state = opened[0].get_state()
    finally:
        await channel.close()
        await running.server.stop(grace=None)

    assert before == first
    assert after == renewed != first
    assert len(opened) == 2
    assert old_state is grpc.ChannelConnectivity.SHUTDOWN
