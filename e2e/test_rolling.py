"""Rolling restarts of the gRPC services: two replicas each of auth, users and ratelimit as real
processes, a gateway balancing over both of each (gRPC's round robin over a list of addresses),
and every replica stopped with SIGTERM and started again, one at a time, while sign-ins, reads
and writes run: no request fails, and every acknowledged write is there."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port

from .conftest import SERVICE_NAMES, Stack, serve_gateway
from .identity import ADMIN, PASSWORD, sign_up

REPLICAS = 2
MIN_READY_S = 2.0


async def _serving(port: int, service: str) -> None:
    async with asyncio.timeout(30), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub: Any = health_pb2_grpc.HealthStub(channel)
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)


def _targets(ports: list[int]) -> str:
    return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)


class Replicas:
    """Each service's replicas as processes, on ports kept across restarts."""

    def __init__(self, stack: Stack, database_urls: dict[str, str], redis_url: str) -> None:
        self.ports = {name: [free_port() for _ in range(REPLICAS)] for name in SERVICE_NAMES}
        users = _targets(self.ports["users"])
        common = {"LOG_LEVEL": "WARNING", "REDIS_URL": redis_url}
        self._env = {
            "auth": {
                "AUTH_DATABASE_URL": database_urls["auth"],
                "AUTH_USERS_ADDR": users,
                # Both replicas sign with the stack's key.
                "AUTH_SIGNING_KEY_FILE": str(stack.signing_key_file),
            },
            "users": {
                "USERS_DATABASE_URL": database_urls["users"],
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
        self._common = common
        self.processes: dict[tuple[str, int], ServiceProcess] = {}

    async def start(self, name: str, index: int) -> None:
        prefix = name.upper()
        process = ServiceProcess(
            name,
            env={
                **self._common,
                **self._env[name],
                f"{prefix}_GRPC_PORT": str(self.ports[name][index]),
                f"{prefix}_METRICS_PORT": "0",
                f"{prefix}_MIGRATE_ON_START": "false",
                # Clients leave a stopping replica when it reports NOT_SERVING; calls they sent
                # just before land within this.
                f"{prefix}_SHUTDOWN_DRAIN_S": "1",
            },
        )
        await process.start()
        self.processes[name, index] = process
        await _serving(self.ports[name][index], SERVICE_NAMES[name])

    async def restart(self, name: str, index: int) -> None:
        assert await self.processes[name, index].terminate(timeout_s=30) == 0
        await self.start(name, index)

    async def stop_all(self) -> None:
        await asyncio.gather(
            *(process.terminate(timeout_s=30) for process in self.processes.values()),
            return_exceptions=True,
        )


async def test_every_grpc_service_restarted_one_replica_at_a_time_fails_no_request(
    stack: Stack, stack_database_urls: dict[str, str], flushed_redis: str
) -> None:
    replicas = Replicas(stack, stack_database_urls, flushed_redis)
    failures: list[tuple[str, int, str]] = []
    statuses: collections.Counter[str] = collections.Counter()
    written: list[int] = []
    stop = asyncio.Event()
    try:
        # users first: auth's start reaches it.
        for name in ("users", "auth", "ratelimit"):
            await asyncio.gather(*(replicas.start(name, i) for i in range(REPLICAS)))
        settings = stack.gateway_settings.model_copy(
            update={f"{name}_addr": _targets(replicas.ports[name]) for name in SERVICE_NAMES}
        )
        async with serve_gateway(settings) as url, stack.client(url) as client:
            await sign_up(client, "roller")

            async def record(what: str, answer: httpx.Response, expected: int) -> bool:
                statuses[f"{what} {answer.status_code}"] += 1
                if answer.status_code != expected:
                    failures.append((what, answer.status_code, answer.text[:200]))
                return answer.status_code == expected

            async def traffic() -> None:
                while not stop.is_set():
                    login = await client.post(
                        "/api/v1/login", data={"username": "roller", "password": PASSWORD}
                    )
                    if not await record("login", login, 200):
                        continue
                    bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
                    await record("me", await client.get("/api/v1/user/me/", headers=bearer), 200)
                    post = await client.post(
                        "/api/v1/roller/post",
                        json={"title": "Rolling", "text": "Written during a rolling restart."},
                        headers=bearer,
                    )
                    if await record("post", post, 201):
                        written.append(post.json()["id"])
                    await record("posts", await client.get("/api/v1/roller/posts"), 200)

            load = asyncio.gather(traffic(), traffic())
            for name in ("auth", "users", "ratelimit"):
                for index in range(REPLICAS):
                    # As a rollout's minReadySeconds: clients reconnect to a restarted replica
                    # within their longest reconnect backoff (1 s), and must have done so before
                    # its twin stops.
                    await asyncio.sleep(MIN_READY_S)
                    await replicas.restart(name, index)
            await asyncio.sleep(MIN_READY_S)
            stop.set()
            await load
            # Every acknowledged post is there, once.
            stored = await client.get(
                "/api/v1/roller/posts", params={"items_per_page": 100, "page": 1}
            )
            total = stored.json()["total_count"]
    finally:
        stop.set()
        await replicas.stop_all()

    assert not failures, (failures[:5], statuses)
    assert statuses["post 201"] > 20, statuses
    assert total == len(written) == len(set(written))
