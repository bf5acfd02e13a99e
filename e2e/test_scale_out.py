"""Scaling out: two of every process (auth, users, ratelimit, gateways, workers) behind the real
Envoy, each a real process. Under traffic the load spreads over both of each, the limits stay
exact across them, and then one of each is killed (SIGKILL) in turn: no acknowledged write is
lost, and the only failures a client sees are the requests that were in flight on a killed
process."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial

import httpx
from redis.asyncio import Redis

from meshplate_core.jobs import JobStore
from meshplate_core.mtls import Tls
from meshplate_core.probe import http_ok
from meshplate_testing.edge import Edge, local_config
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port

from .conftest import ENVOY_CONFIG, SERVICE_NAMES, Stack
from .identity import ADMIN, bearer, log_in, sign_up
from .replicas import Load, Replicas, targets

# Requests in flight at any moment: the two loops of Load, and one posting tasks.
CONCURRENCY = 3
# Seconds of traffic before the shares are read, and between two kills.
WARM_S = 4.0
BETWEEN_KILLS_S = 1.0
# The share of one service's work each of its two processes must serve.
SHARE = (0.3, 0.7)


@dataclass
class Tasks:
    """Sample tasks posted one after the other, with the ids of those acknowledged (201)."""

    client: httpx.AsyncClient
    acknowledged: list[str] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            answer = await self.client.post("/api/v1/tasks/task", params={"message": str(n)})
            if answer.status_code == 201:
                self.acknowledged.append(answer.json()["id"])
            else:
                self.failures.append(answer.status_code)
            await asyncio.sleep(0.01)


def _gateway(port: int, replicas: Replicas, stack: Stack, redis_url: str) -> ServiceProcess:
    return ServiceProcess(
        "gateway",
        env={
            "GATEWAY_PORT": str(port),
            "GATEWAY_AUTH_ADDR": targets(replicas.ports["auth"]),
            "GATEWAY_USERS_ADDR": targets(replicas.ports["users"]),
            "GATEWAY_RATELIMIT_ADDR": targets(replicas.ports["ratelimit"]),
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "TLS_DIR": str(stack.workload_tls("gateway").folder),
            "LOG_LEVEL": "WARNING",
        },
    )


def _worker(port: int, replicas: Replicas, tls: Tls, redis_url: str) -> ServiceProcess:
    return ServiceProcess(
        "worker",
        env={
            "WORKER_HTTP_PORT": str(port),
            "WORKER_REDIS_URL": redis_url,
            "WORKER_AUTH_ADDR": targets(replicas.ports["auth"]),
            "WORKER_USERS_ADDR": targets(replicas.ports["users"]),
            # What a killed worker held is claimed by the other one after a second.
            "WORKER_CLAIM_IDLE_S": "1",
            "WORKER_CLAIM_INTERVAL_S": "0.2",
            "WORKER_SAMPLE_TASK_S": "0.05",
            "WORKER_PURGE_INTERVAL_S": "0",
            "WORKER_REPORT_INTERVAL_S": "0",
            # No relay: the welcome e-mails fail and wait for their retries, out of the way.
            "WORKER_SMTP_PORT": str(free_port()),
            "TLS_DIR": str(tls.folder),
            "LOG_LEVEL": "WARNING",
        },
    )


async def _started(process: ServiceProcess, health: str) -> ServiceProcess:
    await process.start()
    await process.wait_until(partial(http_ok, health), timeout_s=30)
    return process


async def _counted(url: str, pattern: str) -> float:
    """The sum of the samples of `url`'s /metrics whose line matches `pattern`."""
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(url)).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if not line.startswith("#") and re.match(pattern, line)
    )


async def _split(ports: list[int], pattern: str) -> list[float]:
    """Each process's share of the samples matching `pattern` on its /metrics (by port)."""
    counts = [await _counted(f"http://127.0.0.1:{port}/metrics", pattern) for port in ports]
    total = sum(counts)
    return [count / total if total else 0.0 for count in counts]


@dataclass
class Fleet:
    """Two of every process, and the Envoy in front of the gateways."""

    replicas: Replicas
    gateways: list[ServiceProcess]
    workers: list[ServiceProcess]
    proxy: Edge
    # Where each gateway and each worker serves HTTP (/metrics included).
    gateway_ports: list[int]
    worker_ports: list[int]


@contextlib.asynccontextmanager
async def _fleet(
    stack: Stack, database_urls: dict[str, str], redis_url: str
) -> AsyncIterator[Fleet]:
    """Two of each gRPC service, two gateways, two workers, Envoy in front; stopped at the end."""
    replicas = Replicas(stack, database_urls, redis_url)
    gateway_ports, worker_ports = [free_port(), free_port()], [free_port(), free_port()]
    gateways: list[ServiceProcess] = []
    workers: list[ServiceProcess] = []
    proxy = Edge(
        local_config(
            ENVOY_CONFIG,
            listen=("127.0.0.1", free_port()),
            admin=("127.0.0.1", free_port()),
            gateways=[("127.0.0.1", port) for port in gateway_ports],
            ratelimit=[("127.0.0.1", port) for port in replicas.ports["ratelimit"]],
            tls=stack.workload_tls("envoy").folder,
            edge_limit=(1_000_000, 60),
        )
    )
    try:
        for name in ("users", "auth", "ratelimit"):  # users first: auth's start reaches it
            await asyncio.gather(*(replicas.start(name, i) for i in range(replicas.count)))
        for port in gateway_ports:
            process = _gateway(port, replicas, stack, redis_url)
            gateways.append(await _started(process, f"http://127.0.0.1:{port}/health"))
        for port in worker_ports:
            process = _worker(port, replicas, stack.workload_tls("worker"), redis_url)
            workers.append(await _started(process, f"http://127.0.0.1:{port}/health"))
        await asyncio.to_thread(proxy.start)
        yield Fleet(replicas, gateways, workers, proxy, gateway_ports, worker_ports)
    finally:
        await asyncio.to_thread(proxy.stop)
        for process in [*gateways, *workers]:
            await process.terminate(timeout_s=20)
        await replicas.stop_all()


async def _exact_across_replicas(client: httpx.AsyncClient) -> int:
    """80 requests at once against a rule of 30, spread over both gateways and both ratelimit
    replicas: how many were admitted."""
    admin = bearer((await log_in(client, *ADMIN))[0])
    await sign_up(client, "metered")
    tier = await client.post("/api/v1/tier", json={"name": "metered"}, headers=admin)
    assert tier.status_code == 201, tier.text
    moved = await client.patch(
        "/api/v1/user/metered/tier", json={"tier_id": tier.json()["id"]}, headers=admin
    )
    assert moved.status_code == 200, moved.text
    rule = await client.post(
        "/api/v1/tier/metered/rate_limit",
        json={"path": "/api/v1/user/me/", "limit": 30, "period": 60},
        headers=admin,
    )
    assert rule.status_code == 201, rule.text
    token = bearer((await log_in(client, "metered"))[0])
    answers = await asyncio.gather(
        *(client.get("/api/v1/user/me/", headers=token) for _ in range(80))
    )
    assert {answer.status_code for answer in answers} == {200, 429}
    return sum(answer.status_code == 200 for answer in answers)


async def _succeeded(redis_url: str, ids: list[str], timeout_s: float) -> dict[str, str]:
    """Each job's status once all are done (or the time is up)."""
    jobs = JobStore(Redis.from_url(redis_url), ttl_s=3600)
    statuses: dict[str, str] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                for job_id in ids:
                    if statuses.get(job_id) != "succeeded":
                        job = await jobs.get(job_id)
                        statuses[job_id] = job.status if job else "missing"
                if all(status == "succeeded" for status in statuses.values()):
                    return statuses
                await asyncio.sleep(0.2)
    except TimeoutError:
        return statuses
    finally:
        await jobs.close()


async def test_two_of_everything_share_the_load_and_lose_one_of_each_without_losing_a_write(
    stack: Stack, stack_database_urls: dict[str, str], flushed_redis: str
) -> None:
    async with (
        _fleet(stack, stack_database_urls, flushed_redis) as fleet,
        stack.client(fleet.proxy.url) as client,
    ):
        replicas = fleet.replicas
        admitted = await _exact_across_replicas(client)
        await sign_up(client, "scaler")
        load, tasks = Load(client, "scaler"), Tasks(client)
        load.start()
        tasking = asyncio.create_task(tasks.run())
        await asyncio.sleep(WARM_S)

        served = r'grpc_server_handled_total\{[^}]*grpc_service="meshplate\.'
        shares = {name: await _split(replicas.metrics[name], served) for name in SERVICE_NAMES}
        shares["gateway"] = await _split(fleet.gateway_ports, r"http_requests_total\{")
        shares["worker"] = await _split(
            fleet.worker_ports, r'worker_jobs_total\{kind="sample-task",outcome="succeeded"\}'
        )

        kills = [
            replicas.processes["users", 1],
            replicas.processes["auth", 1],
            replicas.processes["ratelimit", 1],
            fleet.gateways[1],
            fleet.workers[1],
        ]
        for process in kills:
            await process.kill()
            await asyncio.sleep(BETWEEN_KILLS_S)
        await asyncio.sleep(2 * BETWEEN_KILLS_S)
        tasks.stop.set()
        await load.halt()
        await tasking
        stored = await load.stored()
        jobs = await _succeeded(flushed_redis, tasks.acknowledged, timeout_s=30)
        edge_failures = [line for line in fleet.proxy.access_log() if line["status"] >= 500]

    assert admitted == 30
    for name, split in shares.items():
        assert all(SHARE[0] <= share <= SHARE[1] for share in split), (name, shares)
    failed = [status for _what, status, _text in load.failures] + tasks.failures
    # Only what was in flight on a killed process: at most one request per loop and kill.
    assert len(failed) <= CONCURRENCY * len(kills), (load.failures, tasks.failures)
    assert set(failed) <= {502, 503, 504}, (load.failures, tasks.failures, edge_failures[:5])
    assert load.statuses["post 201"] > 20, load.statuses
    # Every acknowledged post is stored; one whose answer was lost with a killed process may be
    # too (a 503 after the write), never one acknowledged and lost.
    unanswered = sum(1 for what, _status, _text in load.failures if what == "post")
    assert len(load.written) == len(set(load.written))
    assert len(load.written) <= stored <= len(load.written) + unanswered
    assert len(tasks.acknowledged) > 50
    assert set(jobs.values()) == {"succeeded"}, jobs
