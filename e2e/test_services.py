"""Each gRPC service as a real process: starts, migrates, follows its database, stops on SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from meshplate_core.channels import open_channel
from meshplate_core.database import open_engine
from meshplate_core.mtls import Tls
from meshplate_testing.databases import migrated_database
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.proxy import TcpProxy
from meshplate_testing.servers import free_port

from .conftest import MIGRATIONS

SERVICES = {
    "auth": "meshplate.auth.v1.AuthService",
    "users": "meshplate.users.v1.UsersService",
    "ratelimit": "meshplate.ratelimit.v1.RateLimitService",
}
SERVING = health_pb2.HealthCheckResponse.SERVING


def _through(proxy: TcpProxy, url: str) -> str:
    credentials, _, rest = url.rpartition("@")
    return f"{credentials}@127.0.0.1:{proxy.port}/{rest.split('/', 1)[1]}"


def _env(service: str, *, database_url: str, port: int, tls: Tls | None = None) -> dict[str, str]:
    prefix = service.upper()
    return {
        "ENVIRONMENT": "local",
        **({"TLS_DIR": str(tls.folder)} if tls else {}),
        f"{prefix}_DATABASE_URL": database_url,
        f"{prefix}_GRPC_PORT": str(port),
        f"{prefix}_METRICS_PORT": "0",
        f"{prefix}_HEALTH_INTERVAL_S": "0.2",
        f"{prefix}_ARGON2_TIME_COST": "1",
    }


async def _health(port: int, service: str, tls: Tls) -> int:
    async with open_channel(
        f"127.0.0.1:{port}", services=[], timeout_s=2, tls=tls, server="localhost"
    ) as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
        return int(reply.status)


async def _eventually_status(
    port: int, service: str, status: int, tls: Tls, timeout_s: float = 10
) -> None:
    async with asyncio.timeout(timeout_s):
        while await _health(port, service, tls) != status:
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("service", list(SERVICES))
async def test_service_serves_only_while_its_database_answers_and_stops_on_sigterm(
    service: str,
    make_database: Callable[[str], str],
    postgres_proxy: TcpProxy,
    workload_tls: Callable[[str], Tls],
) -> None:
    url = await asyncio.to_thread(make_database, f"{service}_process")
    port = free_port()
    tls = workload_tls(service)
    process = ServiceProcess(
        service,
        env=_env(service, database_url=_through(postgres_proxy, url), port=port, tls=tls),
    )
    await process.start()
    try:
        await process.wait_for_log(lambda line: "listening" in line["msg"], timeout_s=20)
        await _eventually_status(port, SERVICES[service], SERVING, tls)

        await postgres_proxy.cut()
        await _eventually_status(
            port, SERVICES[service], health_pb2.HealthCheckResponse.NOT_SERVING, tls
        )
        await postgres_proxy.open()
        await _eventually_status(port, SERVICES[service], SERVING, tls)
    finally:
        code = await process.terminate(timeout_s=15)

    assert code == 0, process.output()
    assert any(line["msg"] == "stopped" for line in process.lines)


@pytest.mark.parametrize("service", list(SERVICES))
async def test_migrate_command_prepares_the_database_and_exits(
    service: str, make_database: Callable[[str], str]
) -> None:
    url = await asyncio.to_thread(make_database, f"{service}_migrate")
    reference = await asyncio.to_thread(
        migrated_database, make_database, f"{service}_migrate_reference", MIGRATIONS[service]
    )
    process = ServiceProcess(service, "migrate", env=_env(service, database_url=url, port=0))
    await process.start()

    code = await process.wait(timeout_s=30)

    assert code == 0, process.output()
    tables, version = await _schema(url)
    assert (tables, version) == await _schema(reference)
    assert len(tables - {"alembic_version"}) > 0
    assert version == ScriptDirectory(str(MIGRATIONS[service])).get_current_head()


async def _schema(url: str) -> tuple[set[str], str]:
    # The tables of a database, and the migration it is at.
    engine = open_engine(url, pool_size=1, application_name="tests")
    try:
        async with engine.connect() as conn:
            names = await conn.scalars(
                text(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            )
            tables = set(names)
            version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()
    return tables, str(version)


async def test_unreachable_database_at_start_is_a_clear_failure(
    workload_tls: Callable[[str], Tls],
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    env = _env("users", database_url=url, port=0, tls=workload_tls("users"))
    process = ServiceProcess("users", env=env)
    await process.start()

    code = await process.wait(timeout_s=30)

    assert code == 1
    assert any(line["msg"] == "users serve failed" for line in process.lines)


async def test_invalid_settings_are_one_line_and_exit_code_2() -> None:
    process = ServiceProcess("users", env={"USERS_GRPC_PORT": "not-a-port"})
    await process.start()

    code = await process.wait(timeout_s=30)

    assert code == 2
    assert process.raw == [
        "users: invalid settings: grpc_port: Input should be a valid integer, unable to parse string as an integer"
    ]


@pytest.mark.parametrize("service", ["users", "gateway", "worker"])
async def test_serving_without_tls_files_or_an_explicit_plaintext_is_one_line_and_exit_code_2(
    service: str,
) -> None:
    process = ServiceProcess(service, env={})
    await process.start()

    code = await process.wait(timeout_s=30)

    assert code == 2
    [line] = process.raw
    assert line.startswith(f"{service}: invalid settings: gRPC needs mutual TLS: set TLS_DIR")


async def test_unknown_command_prints_usage() -> None:
    process = ServiceProcess("users", "explode", env={})
    await process.start()

    code = await process.wait(timeout_s=30)

    assert code == 2
    assert process.raw == ["usage: python -m users [serve|migrate]"]
