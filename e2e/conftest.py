"""The whole stack in one test process: auth, users and ratelimit on real gRPC servers (real
PostgreSQL and Redis), and the gateway served by uvicorn on a real port, reached over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import auth.callers
import auth.server
import ratelimit.callers
import ratelimit.server
import users.callers
import users.server
from auth.settings import Settings as AuthSettings
from gateway.app import create_app
from gateway.settings import Settings as GatewaySettings
from meshplate_core.callers import Callers, granted
from meshplate_core.database import open_engine
from meshplate_core.grpc_server import Register, Running, start
from meshplate_core.mtls import Tls
from meshplate_testing.databases import migrated_database
from meshplate_testing.edge import Edge, local_config
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port
from meshplate_testing.smtp import Mailbox, smtp_server
from ratelimit.settings import Settings as RateLimitSettings
from users.settings import Settings as UsersSettings

from .identity import ADMIN

ENVOY_CONFIG = Path(__file__).resolve().parents[1] / "deploy" / "envoy" / "envoy.yaml"
MIGRATIONS: dict[str, Path] = {
    "auth": auth.server.MIGRATIONS,
    "users": users.server.MIGRATIONS,
    "ratelimit": ratelimit.server.MIGRATIONS,
}
CALLERS: dict[str, Callable[[], list[Callers]]] = {
    "auth": auth.callers.callers,
    "users": users.callers.callers,
    "ratelimit": ratelimit.callers.callers,
}
SERVICE_NAMES = {
    "auth": auth.server.SERVICE_NAME,
    "users": users.server.SERVICE_NAME,
    "ratelimit": ratelimit.server.SERVICE_NAME,
}
TABLES = {
    "auth": "refresh_family, revocation, user_revocation, outbox",
    "users": '"user", tier, outbox',
    "ratelimit": "rule",
}


@pytest.fixture(scope="session")
def stack_database_urls(make_database: Callable[[str], str]) -> dict[str, str]:
    """One fresh, migrated database per service for this session's stack tests."""
    return {
        name: migrated_database(make_database, f"stack_{name}", folder)
        for name, folder in MIGRATIONS.items()
    }


@dataclass
class Stack:
    """The running stack: gateways' URLs, and each gRPC service (stoppable, restartable)."""

    registers: dict[str, Register]
    ports: dict[str, int]
    gateway_settings: GatewaySettings
    signing_key_file: Path
    engines: dict[str, AsyncEngine]
    ratelimit_settings: RateLimitSettings
    workload_tls: Callable[[str], Tls]
    base_url: str = ""
    gateway_url: str = ""
    running: dict[str, Running] = field(default_factory=dict)

    async def start(self, name: str, grants: Mapping[str, list[str]] | None = None) -> None:
        """Start (or restart, on its port) one service, its table of callers with `grants`."""
        self.running[name] = await start(
            self.registers[name],
            service_name=SERVICE_NAMES[name],
            port=self.ports[name],
            tls=self.workload_tls(name),
            callers=granted(CALLERS[name](), grants or {}),
        )

    async def stop(self, name: str) -> None:
        """Stop one service, as a crash or a deploy would."""
        await self.running.pop(name).server.stop(grace=None)

    @contextlib.asynccontextmanager
    async def another_ratelimit(self, **changes: object) -> AsyncIterator[int]:
        """A second ratelimit process (its own limiter and rule cache) on the same stores,
        with `changes` to its settings."""
        settings = self.ratelimit_settings.model_copy(update=changes)
        async with ratelimit.server.build(self.engines["ratelimit"], settings=settings) as register:
            running = await start(
                register,
                service_name=SERVICE_NAMES["ratelimit"],
                tls=self.workload_tls("ratelimit"),
                callers=CALLERS["ratelimit"](),
            )
            try:
                yield running.port
            finally:
                await running.server.stop(grace=None)

    def client(self, base_url: str | None = None) -> httpx.AsyncClient:
        """An HTTP client of the gateway (or of another one)."""
        return httpx.AsyncClient(base_url=base_url or self.base_url, timeout=10)


@contextlib.asynccontextmanager
async def serve_gateway(settings: GatewaySettings, port: int = 0) -> AsyncIterator[str]:
    """A gateway on `port` (0: a free one), served by uvicorn; its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
            proxy_headers=False,
            # As in production (serve_http): a connection still busy after this is cut. Once in
            # a few hundred teardowns, a connection from the session's Envoy kept uvicorn
            # waiting for ever.
            timeout_graceful_shutdown=5,
        )
    )
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(15):
        while not server.started:
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await serving
        # A connection uvicorn still holds after its graceful timeout (one from the session's
        # Envoy, once in a few hundred teardowns) is closed here, not left to the garbage
        # collector, whose ResourceWarning would fail whichever test runs then.
        for connection in list(server.server_state.connections):
            connection.transport.close()


@dataclass(frozen=True)
class EdgePorts:
    """Where the session's Envoy expects the stack: every test's gateway listens on this same
    port."""

    gateway: int


@pytest.fixture(scope="session")
def edge_ports() -> EdgePorts:
    return EdgePorts(gateway=free_port())


@pytest.fixture(scope="session")
def edge(edge_ports: EdgePorts, workload_tls: Callable[[str], Tls]) -> Iterator[Edge]:
    """The real Envoy with deploy/envoy/envoy.yaml in front of the stack, for the session."""
    proxy = Edge(
        local_config(
            ENVOY_CONFIG,
            listen=("127.0.0.1", free_port()),
            admin=("127.0.0.1", free_port()),
            stats=("127.0.0.1", free_port()),
            gateways=[("127.0.0.1", edge_ports.gateway)],
            tls=workload_tls("envoy").folder,
            # Every test's requests come from this one address: out of the way of all but the
            # tests of the per-address limit, which start an Envoy of their own.
            edge_limit=(1_000_000, 1),
        )
    )
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
async def stack(
    stack_database_urls: dict[str, str],
    flushed_redis: str,
    tmp_path: Path,
    edge: Edge,
    edge_ports: EdgePorts,
    workload_tls: Callable[[str], Tls],
) -> AsyncIterator[Stack]:
    """Everything up behind Envoy, with empty databases (but the first admin) and an empty
    Redis. `stack.client()` talks to Envoy; `stack.gateway_url` is the gateway itself."""
    ports = {name: free_port() for name in MIGRATIONS}
    engines = {
        name: open_engine(url, pool_size=5, application_name="stack-tests")
        for name, url in stack_database_urls.items()
    }
    for name, engine in engines.items():
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {TABLES[name]} RESTART IDENTITY CASCADE"))
    users_settings = UsersSettings(
        database_url=stack_database_urls["users"],
        redis_url=flushed_redis,
        argon2_time_cost=1,
        admin_username=ADMIN[0],
        admin_email="root@example.com",
        admin_password=SecretStr(ADMIN[1]),
        auth_addr=f"127.0.0.1:{ports['auth']}",
        tls_dir=workload_tls("users").folder,
        _env_file=None,
    )
    ratelimit_settings = RateLimitSettings(
        database_url=stack_database_urls["ratelimit"],
        redis_url=flushed_redis,
        # Out of the way of the other tests; rate-limit tests set their rules.
        default_limit=10_000,
        # A slow Redis answer on a loaded machine must not pass for an outage (failing open
        # would admit one request more than the exact counts the tests expect).
        redis_timeout_s=5,
        _env_file=None,
    )
    auth_settings = AuthSettings(
        database_url=stack_database_urls["auth"],
        redis_url=flushed_redis,
        users_addr=f"127.0.0.1:{ports['users']}",
        generated_key_file=tmp_path / "signing-key.pem",
        tls_dir=workload_tls("auth").folder,
        _env_file=None,
    )
    await users.server.prepare(engines["users"], settings=users_settings)
    async with contextlib.AsyncExitStack() as exits:
        registers = {
            "auth": await exits.enter_async_context(
                auth.server.build(engines["auth"], settings=auth_settings)
            ),
            "users": await exits.enter_async_context(
                users.server.build(engines["users"], settings=users_settings)
            ),
            "ratelimit": await exits.enter_async_context(
                ratelimit.server.build(engines["ratelimit"], settings=ratelimit_settings)
            ),
        }
        stack = Stack(
            registers=registers,
            ports=ports,
            signing_key_file=auth_settings.generated_key_file,
            engines=engines,
            ratelimit_settings=ratelimit_settings,
            workload_tls=workload_tls,
            gateway_settings=GatewaySettings(
                auth_addr=f"127.0.0.1:{ports['auth']}",
                users_addr=f"127.0.0.1:{ports['users']}",
                ratelimit_addr=f"127.0.0.1:{ports['ratelimit']}",
                redis_url=flushed_redis,
                # Envoy, on this machine, sets X-Forwarded-For.
                trusted_proxies=["127.0.0.1/32"],
                tls_dir=workload_tls("gateway").folder,
                admin_secret_key=SecretStr("e2e-admin-signing-key"),
                _env_file=None,
            ),
        )
        for name in registers:
            await stack.start(name)
        stack.gateway_url = await exits.enter_async_context(
            serve_gateway(stack.gateway_settings, port=edge_ports.gateway)
        )
        stack.base_url = edge.url
        yield stack
        for name in list(stack.running):
            await stack.stop(name)
    for engine in engines.values():
        await engine.dispose()


StartWorker = Callable[..., Awaitable[ServiceProcess]]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """The SMTP server the worker sends through."""
    with smtp_server() as box:
        yield box


@pytest.fixture
async def start_worker(stack: Stack, mailbox: Mailbox) -> AsyncIterator[StartWorker]:
    """Starts a worker process on the stack's Redis, auth and users, sending to `mailbox`."""
    started: list[ServiceProcess] = []

    async def start(**env: str) -> ServiceProcess:
        process = ServiceProcess(
            "worker",
            env={
                "WORKER_REDIS_URL": stack.gateway_settings.redis_url,
                "WORKER_HTTP_PORT": str(free_port()),
                "WORKER_AUTH_ADDR": f"127.0.0.1:{stack.ports['auth']}",
                "WORKER_USERS_ADDR": f"127.0.0.1:{stack.ports['users']}",
                "WORKER_SMTP_PORT": str(mailbox.port),
                "WORKER_SAMPLE_TASK_S": "0.3",
                "WORKER_PURGE_INTERVAL_S": "0",
                "WORKER_REPORT_INTERVAL_S": "0",
                "TLS_DIR": str(stack.workload_tls("worker").folder),
                **{f"WORKER_{name.upper()}": value for name, value in env.items()},
            },
        )
        started.append(process)
        await process.start()
        await process.wait_for_log(lambda line: "Uvicorn running" in line["msg"], timeout_s=20)
        return process

    yield start
    for process in started:
        await process.terminate(timeout_s=15)


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 15) -> None:
    """Once `check` holds (TimeoutError after `timeout_s`)."""
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.1)
