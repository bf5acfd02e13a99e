"""The whole stack in one test process: auth, users and ratelimit on real gRPC servers (port 0,
real PostgreSQL), and the gateway served by uvicorn on a real port, reached over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import auth.server
import ratelimit.server
import users.server
from gateway.app import create_app
from gateway.settings import Settings as GatewaySettings
from meshplate_core.database import migrate, open_engine
from meshplate_core.grpc_server import Register, Running, start
from users.settings import Settings as UsersSettings

MIGRATIONS: dict[str, Path] = {
    "auth": auth.server.MIGRATIONS,
    "users": users.server.MIGRATIONS,
    "ratelimit": ratelimit.server.MIGRATIONS,
}
SERVICE_NAMES = {
    "auth": auth.server.SERVICE_NAME,
    "users": users.server.SERVICE_NAME,
    "ratelimit": ratelimit.server.SERVICE_NAME,
}


@pytest.fixture(scope="session")
def stack_database_urls(make_database: Callable[[str], str]) -> dict[str, str]:
    """One fresh, migrated database per service for this session's stack tests."""
    urls = {name: make_database(f"stack_{name}") for name in MIGRATIONS}

    async def migrate_all() -> None:
        for name, url in urls.items():
            engine = open_engine(url, pool_size=1, application_name="stack-tests")
            try:
                await migrate(engine, MIGRATIONS[name])
            finally:
                await engine.dispose()

    asyncio.run(migrate_all())
    return urls


@dataclass
class Stack:
    """The running stack: the gateway's URL, and each gRPC service (stoppable, restartable)."""

    base_url: str
    registers: dict[str, Register]
    running: dict[str, Running] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    async def start(self, name: str) -> None:
        """Start (or restart, on its old port) one service."""
        running = await start(
            self.registers[name], service_name=SERVICE_NAMES[name], port=self.ports.get(name, 0)
        )
        self.running[name], self.ports[name] = running, running.port

    async def stop(self, name: str) -> None:
        """Stop one service, as a crash or a deploy would."""
        await self.running.pop(name).server.stop(grace=None)

    def client(self) -> httpx.AsyncClient:
        """An HTTP client of the gateway."""
        return httpx.AsyncClient(base_url=self.base_url, timeout=10)


async def _clean_users(engine: AsyncEngine, settings: UsersSettings) -> None:
    async with engine.begin() as conn:
        await conn.execute(text('TRUNCATE "user", tier RESTART IDENTITY CASCADE'))
    await users.server.prepare(engine, settings=settings)


@pytest.fixture
async def stack(stack_database_urls: dict[str, str], flushed_redis: str) -> AsyncIterator[Stack]:
    """Everything up, with empty databases and an empty Redis."""
    engines = {
        name: open_engine(url, pool_size=5, application_name="stack-tests")
        for name, url in stack_database_urls.items()
    }
    users_settings = UsersSettings(
        database_url=stack_database_urls["users"], argon2_time_cost=1, _env_file=None
    )
    await _clean_users(engines["users"], users_settings)
    stack = Stack(
        base_url="",
        registers={
            "auth": auth.server.build(engines["auth"]),
            "users": users.server.build(engines["users"], settings=users_settings),
            "ratelimit": ratelimit.server.build(engines["ratelimit"]),
        },
    )
    for name in stack.registers:
        await stack.start(name)
    settings = GatewaySettings(
        auth_addr=f"127.0.0.1:{stack.ports['auth']}",
        users_addr=f"127.0.0.1:{stack.ports['users']}",
        ratelimit_addr=f"127.0.0.1:{stack.ports['ratelimit']}",
        redis_url=flushed_redis,
        _env_file=None,
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            await asyncio.sleep(0.01)
    stack.base_url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    yield stack
    server.should_exit = True
    await serving
    for name in list(stack.running):
        await stack.stop(name)
    for engine in engines.values():
        await engine.dispose()
