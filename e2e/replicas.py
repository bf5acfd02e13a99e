"""Replicas of the gRPC services as real processes, and a user's traffic through a gateway over
them, with what each request answered (the rolling-restart and scale-out tests)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx

from meshplate_core.probe import grpc_serving
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port

from .conftest import SERVICE_NAMES, Stack, serve_gateway
from .identity import ADMIN, PASSWORD, sign_up

REPLICAS = 2


def targets(ports: list[int]) -> str:
    return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)


class Replicas:
    """Each service's replicas as processes, on ports kept across restarts."""

    def __init__(
        self, stack: Stack, database_urls: dict[str, str], redis_url: str, count: int = REPLICAS
    ) -> None:
        self.count = count
        self.ports = {name: [free_port() for _ in range(count)] for name in SERVICE_NAMES}
        # Where each replica serves /metrics.
        self.metrics = {name: [free_port() for _ in range(count)] for name in SERVICE_NAMES}
        users, auth = targets(self.ports["users"]), targets(self.ports["auth"])
        self._common = {"LOG_LEVEL": "WARNING", "REDIS_URL": redis_url}
        self._tls = stack.workload_tls
        self._env = {
            "auth": {
                "AUTH_DATABASE_URL": database_urls["auth"],
                "AUTH_USERS_ADDR": users,
                # Both replicas sign with the stack's key.
                "AUTH_SIGNING_KEY_FILE": str(stack.signing_key_file),
            },
            "users": {
                "USERS_DATABASE_URL": database_urls["users"],
                "USERS_AUTH_ADDR": auth,
                "USERS_ARGON2_TIME_COST": "1",
                "ADMIN_USERNAME": ADMIN[0],
                "ADMIN_PASSWORD": ADMIN[1],
                "ADMIN_EMAIL": "root@example.com",
            },
            "ratelimit": {
                "RATELIMIT_DATABASE_URL": database_urls["ratelimit"],
                "DEFAULT_RATE_LIMIT_LIMIT": "1000000",
                "RATELIMIT_LOGIN_ATTEMPT_LIMIT": "1000000",
                "RATELIMIT_REDIS_TIMEOUT_S": "5",
            },
        }
        self.processes: dict[tuple[str, int], ServiceProcess] = {}

    async def start(self, name: str, index: int) -> None:
        prefix = name.upper()
        process = ServiceProcess(
            name,
            env={
                **self._common,
                **self._env[name],
                f"{prefix}_GRPC_PORT": str(self.ports[name][index]),
                f"{prefix}_METRICS_PORT": str(self.metrics[name][index]),
                f"{prefix}_MIGRATE_ON_START": "false",
                # Clients leave a stopping replica when it reports NOT_SERVING; calls they sent
                # just before land within this.
                f"{prefix}_SHUTDOWN_DRAIN_S": "1",
                "TLS_DIR": str(self._tls(name).folder),
            },
        )
        await process.start()
        self.processes[name, index] = process
        address = f"127.0.0.1:{self.ports[name][index]}"
        serving = partial(grpc_serving, address, SERVICE_NAMES[name], self._tls(name))
        await process.wait_until(serving, timeout_s=30)

    async def restart(self, name: str, index: int) -> None:
        assert await self.processes[name, index].terminate(timeout_s=30) == 0
        await self.start(name, index)

    async def stop_all(self) -> None:
        await asyncio.gather(
            *(process.terminate(timeout_s=30) for process in self.processes.values()),
            return_exceptions=True,
        )


@dataclass
class Load:
    """Logins, /me, posts written and pages of posts, as one user, with what each answered."""

    client: httpx.AsyncClient
    username: str
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    tried: int = 0
    last_failure_at: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    running: asyncio.Future[Any] | None = None

    def start(self) -> None:
        """Two loops of traffic, until `halt`."""
        self.running = asyncio.gather(self.run(), self.run())

    async def halt(self) -> None:
        """Stop the loops and wait for the requests in flight."""
        self.stop.set()
        if self.running is not None:
            await self.running

    def _record(self, what: str, answer: httpx.Response, expected: int) -> bool:
        self.statuses[f"{what} {answer.status_code}"] += 1
        if answer.status_code != expected:
            self.failures.append((what, answer.status_code, answer.text[:200]))
            self.last_failure_at = asyncio.get_running_loop().time()
        return answer.status_code == expected

    async def run(self) -> None:
        while not self.stop.is_set():
            login = await self.client.post(
                "/api/v1/login", data={"username": self.username, "password": PASSWORD}
            )
            if not self._record("login", login, 200):
                await asyncio.sleep(0.02)
                continue
            bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
            self._record("me", await self.client.get("/api/v1/user/me/", headers=bearer), 200)
            self.tried += 1
            post = await self.client.post(
                f"/api/v1/{self.username}/post",
                json={"title": "Written", "text": "Written while a service restarts."},
                headers=bearer,
            )
            if self._record("post", post, 201):
                self.written.append(post.json()["id"])
            posts = await self.client.get(f"/api/v1/{self.username}/posts")
            self._record("posts", posts, 200)

    async def stored(self) -> int:
        """How many posts the user has."""
        page = await self.client.get(f"/api/v1/{self.username}/posts")
        return int(page.json()["total_count"])


@contextlib.asynccontextmanager
async def loaded(stack: Stack, replicas: Replicas, username: str) -> AsyncIterator[Load]:
    """The replicas up, a gateway over them, and two loops of traffic running for the block."""
    # users first: auth's start reaches it.
    for name in ("users", "auth", "ratelimit"):
        await asyncio.gather(*(replicas.start(name, i) for i in range(replicas.count)))
    settings = stack.gateway_settings.model_copy(
        update={f"{name}_addr": targets(replicas.ports[name]) for name in SERVICE_NAMES}
    )
    async with serve_gateway(settings) as url, stack.client(url) as client:
        await sign_up(client, username)
        load = Load(client, username)
        load.start()
        try:
            yield load
        finally:
            await load.halt()
