"""Meshplate under the bench: `make run`'s runner (e2e.runner, every process separate) on
PostgreSQL and Redis, logging warnings only, with every limit raised so far that the limiter
still decides each request but refuses none (the per-user and login limits at the gateway,
the per-address one at Envoy's edge), and the sample task taking no time. Seeded with one user,
logged in, and 20 posts of theirs. Its processes are counted as groups: each service, Envoy, the
runner itself (it relays every line the others print), Redis and PostgreSQL (its own processes
and the backends of the stack's databases).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

import asyncpg
import httpx

from bench.child import serving
from bench.procs import Group, cmdline, parents, postgres
from bench.procs import tree as process_tree
from bench.servers import postmaster_pid, redis_pid
from e2e.runner import RUNNER, Runner, runner
from meshplate_core.mtls import Tls
from meshplate_core.probe import grpc_serving
from meshplate_testing.servers import free_port

SERVICES = ("gateway", "auth", "users", "ratelimit", "worker")
LIMIT = "1000000000"
USERNAME = "bench"
PASSWORD = "correct horse"
POSTS = 20
START_TIMEOUT_S = 90
USERS_SERVICE = "meshplate.users.v1.UsersService"


@dataclass
class Meshplate:
    """The running stack, its seeded user's token, and its process groups."""

    stack: Runner
    redis_url: str
    token: str = ""
    groups: list[Group] = field(default_factory=list)
    # Which Redis and PostgreSQL processes were counted (a shared server's are shared).
    servers: dict[str, str] = field(default_factory=dict)
    # The runner's exit code once stopped (0: every process stopped cleanly).
    exit_code: int | None = None

    @property
    def missing(self) -> set[str]:
        """The runner's processes that were not running once it was up."""
        return {*SERVICES, "envoy"} - {group.name for group in self.groups}

    @property
    def gateway(self) -> str:
        return self.stack.url("gateway")

    def tls(self, name: str) -> Tls:
        """A workload's TLS folder, made by the runner (scripts/run_stack.py)."""
        return Tls(self.stack.process.cwd / "var" / "tls" / name)

    @property
    def edge(self) -> str:
        return self.stack.url("edge")


def output(stack: Runner) -> str:
    """What the runner's processes printed last, Envoy's access log left out."""
    return "\n".join([line for line in stack.process.raw if not line.startswith("envoy ")][-40:])


def _children(pid: int, family: dict[int, int]) -> dict[str, int]:
    named = {}
    for child in (child for child, ppid in family.items() if ppid == pid):
        argv = cmdline(child)
        if argv[1:2] == ["-m"] and argv[2:3] and argv[2] in SERVICES:
            named[argv[2]] = child
        elif argv and "envoy" in os.path.basename(argv[0]):
            named["envoy"] = child
        elif any(part.endswith("mail_sink.py") for part in argv):
            named["mail"] = child
    return named


async def _groups(mesh: Meshplate, database_urls: dict[str, str]) -> list[Group]:
    family = parents()
    [runner_pid] = [
        pid for pid, ppid in family.items() if ppid == os.getpid() and RUNNER in cmdline(pid)
    ]
    named = _children(runner_pid, family)
    groups = [process_tree(name, named[name]) for name in (*SERVICES, "envoy") if name in named]
    helpers = [runner_pid, *([named["mail"]] if "mail" in named else [])]
    groups.append(Group("runner", lambda family: [pid for pid in helpers if pid in family]))
    unseen = "not a process of this machine: its CPU is not counted"
    redis = await redis_pid(mesh.redis_url)
    if redis is not None:
        groups.append(process_tree("redis", redis))
    databases = {urlsplit(url).path.lstrip("/") for url in database_urls.values()}
    postmaster = await postmaster_pid(next(iter(database_urls.values())))
    if postmaster is not None:
        groups.append(postgres("postgres", postmaster, databases))
    mesh.servers = {
        "Redis": f"{mesh.redis_url}, " + (f"pid {redis}" if redis else unseen),
        "PostgreSQL": f"databases {', '.join(sorted(databases))}, "
        + (f"postmaster pid {postmaster}" if postmaster else unseen),
    }
    return groups


async def _seed(client: httpx.AsyncClient) -> str:
    created = await client.post(
        "/api/v1/user",
        json={
            "name": "Bench",
            "username": USERNAME,
            "email": f"{USERNAME}@example.com",
            "password": PASSWORD,
        },
    )
    assert created.status_code == 201, created.text
    login = await client.post("/api/v1/login", data={"username": USERNAME, "password": PASSWORD})
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    for n in range(POSTS):
        post = await client.post(
            f"/api/v1/{USERNAME}/post",
            json={"title": f"Post {n}", "text": f"Benchmark post number {n}. " * 4},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert post.status_code == 201, post.text
    return token


@asynccontextmanager
async def meshplate(
    redis_url: str, database_urls: dict[str, str], **env: str
) -> AsyncIterator[Meshplate]:
    """The stack for a block, up (with `env` on top of the bench's settings); stopped (every
    process) when the block ends."""
    stack = runner(
        redis_url,
        **{f"{name.upper()}_DATABASE_URL": url for name, url in database_urls.items()},
        LOG_LEVEL="WARNING",
        DEFAULT_RATE_LIMIT_LIMIT=LIMIT,
        RATELIMIT_LOGIN_ATTEMPT_LIMIT=LIMIT,
        # The per-address edge limit: Envoy's own token bucket (scripts/run_stack.py).
        EDGE_LIMIT=LIMIT,
        EDGE_LIMIT_PERIOD_S="60",
        WORKER_SAMPLE_TASK_S="0",
        **env,
    )
    mesh = Meshplate(stack, redis_url)
    await stack.process.start()
    try:
        try:
            await stack.process.wait_for_output("Meshplate is up", timeout_s=START_TIMEOUT_S)
        except TimeoutError:
            raise AssertionError(f"the stack is not up:\n{output(stack)}") from None
        mesh.groups = await _groups(mesh, database_urls)
        yield mesh
    finally:
        mesh.exit_code = await stack.process.terminate(timeout_s=30)


async def seed(mesh: Meshplate) -> None:
    """The bench's user, logged in (`mesh.token`), with its posts."""
    async with httpx.AsyncClient(base_url=mesh.gateway, timeout=30) as client:
        mesh.token = await _seed(client)


@asynccontextmanager
async def second_worker(mesh: Meshplate) -> AsyncIterator[Group]:
    """Another `python -m worker` beside the runner's, alike but for its port and its name."""
    port = free_port()
    env = {
        **mesh.stack.env,
        "WORKER_HTTP_PORT": str(port),
        "WORKER_CONSUMER": "bench-second-worker",
        "WORKER_AUTH_ADDR": f"127.0.0.1:{mesh.stack.ports['auth']}",
        "WORKER_USERS_ADDR": f"127.0.0.1:{mesh.stack.ports['users']}",
        "TLS_DIR": str(mesh.tls("worker").folder),
    }
    async with serving([sys.executable, "-m", "worker"], port=port, env=env) as pid:
        async with httpx.AsyncClient(timeout=10) as client:
            ready = await client.get(f"http://127.0.0.1:{port}/health/ready")
        assert ready.status_code == 200, ready.text
        yield process_tree("worker-2", pid)


async def users_start_s(mesh: Meshplate) -> float:
    """Seconds from starting another `python -m users` (the stack's settings, its own port) to
    its health answering SERVING: what a restarted users service takes to serve again."""
    port = free_port()
    env = {
        **mesh.stack.env,
        "USERS_GRPC_PORT": str(port),
        "USERS_METRICS_PORT": str(free_port()),
        "TLS_DIR": str(mesh.tls("users").folder),
    }
    probe = partial(grpc_serving, f"127.0.0.1:{port}", USERS_SERVICE, mesh.tls("users"))

    async def ready() -> bool:
        return await asyncio.to_thread(probe)

    started = time.monotonic()
    async with serving([sys.executable, "-m", "users"], port=port, env=env, ready=ready):
        return time.monotonic() - started


async def password_hash(users_database: str) -> str:
    """The stored password hash of the bench's user (its parameters are a target)."""
    conn = await asyncpg.connect(users_database)
    try:
        found = await conn.fetchval(
            'SELECT hashed_password FROM "user" WHERE username = $1', USERNAME
        )
    finally:
        await conn.close()
    return str(found)
