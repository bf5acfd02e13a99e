"""`make bench`: issue #11's throughput targets. Meshplate, as the separate processes of `make run`
on PostgreSQL and Redis, against the monolith it replaces and against bare references, all
measured in the same run on the same machine with the same load generator.

Method. Every HTTP load is wrk (`-t2 -c64 -d10s --latency`; 8 or 16 connections for logins and
sign-ups) with a Lua script that counts the answers by status; the gRPC loads are two Python
processes of 32 callers each. Meshplate runs with its limits raised so far that the limiter
still decides every request but refuses none (Envoy's per-address edge limit, EDGE_LIMIT,
included), seeded with one logged-in user and 20 posts; each URL is read once before it is
loaded. Before each load the system's processes, and the monolith's if it is up, have settled
(under a tenth of a core); the CPU time each process and its descendants used during the load,
read from /proc, is divided by the answers (a shared Redis or PostgreSQL server counts its other
clients' work too; of PostgreSQL only the stack's backends are counted). Memory is VmRSS, idle
after start and after the loads. The references: `ref-http`, a bare FastAPI route on uvicorn
(uvloop, httptools, one process per core like the gateway) in the project's environment, and `ref-grpc`, a bare grpc.aio server
answering CheckLimit at once; each is loaded right before what is compared with it. The
monolith (MONOLITH_KIT names the kit's folder; unset, its comparisons are skipped) runs beside
Meshplate, each idle while the other is loaded, and each of its routes is loaded right after the
Meshplate scenario compared with it, so that a ratio compares loads seconds apart, not the
machine's state of different minutes. The cost of mutual TLS is measured too: `/me` at the gateway of
a stack started with plaintext gRPC (GRPC_PLAINTEXT), loaded right before the real stack starts. The load generator shares the machine's cores with the
servers, so every figure is a floor, and ratios within one run are what the targets compare:
absolute figures move from day to day. Everything is printed, then saved to bench/results/, then
the missed targets fail the test.
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Callable, Sequence

import pytest
from redis.asyncio import Redis

from bench import lua, ref_grpc, ref_http
from bench.child import cancelled_by_sigterm
from bench.grpc_load import run_grpc_load
from bench.jobs import run_jobs
from bench.loads import CONNECTIONS, DURATION_S, attempt, get, get_each, login, post, read_once
from bench.meshplate import (
    PASSWORD,
    USERNAME,
    Meshplate,
    meshplate,
    output,
    password_hash,
    second_worker,
    seed,
    users_start_s,
)
from bench.monolith import ADMIN, Monolith, kit, monolith
from bench.procs import Group, Memory, rss, tree
from bench.report import show, summary, write
from bench.results import Run, Spec
from bench.servers import redis_reads
from bench.targets import JOBS, check
from bench.wrk import ensure_wrk

ME = "/api/v1/user/me/"
# A last resort well above what a run takes (about 5 minutes, 6 with the monolith, a few more on
# the kit's first start): every step has its own, shorter bound.
BUDGET_S = 1500


async def _http(run: Run, mesh: Meshplate, mono: Monolith | None) -> None:
    """The HTTP scenarios, each right before what it is compared with is loaded (the monolith's
    counterpart right after it), so a ratio compares loads minutes apart at most."""
    quiet = mono.groups if mono else []
    bearer = {"Authorization": f"Bearer {mesh.token}"}
    async with ref_http.serving() as (port, pid):
        url = f"http://127.0.0.1:{port}/health"
        await read_once(url)
        spec = Spec("ref-http", "bare FastAPI GET /health", CONNECTIONS, get(url))
        await attempt(run, "ref-http", [tree("ref-http", pid)], spec, quiet=[*mesh.groups, *quiet])
    gateway, groups = mesh.gateway, mesh.groups
    await get_each(
        run,
        "Meshplate",
        groups,
        [
            ("health", "gateway GET /health", f"{gateway}/health", None),
            ("me-gateway", f"GET {ME} at the gateway", f"{gateway}{ME}", bearer),
        ],
        quiet=quiet,
    )
    if mono:
        await _monolith_reads(run, mono, mesh, ["monolith-me"])
    logins = login(USERNAME, PASSWORD)
    await attempt(
        run,
        "Meshplate",
        groups,
        Spec(
            "me-with-logins", f"GET {ME} during logins", CONNECTIONS, get(f"{gateway}{ME}", bearer)
        ),
        Spec("logins-with-me", f"POST /api/v1/login during {ME}", 8, post(gateway, logins, 8)),
        quiet=quiet,
    )
    posts, user = f"/api/v1/{USERNAME}/posts", f"/api/v1/user/{USERNAME}"
    for key, title, url, headers, counterpart in (
        ("me-envoy", f"GET {ME} through Envoy", f"{mesh.edge}{ME}", bearer, None),
        ("posts", f"GET {posts}, anonymous", f"{gateway}{posts}", None, "monolith-posts"),
        ("user", f"GET {user}, anonymous", f"{gateway}{user}", None, "monolith-user"),
    ):
        await get_each(run, "Meshplate", groups, [(key, title, url, headers)], quiet=quiet)
        if mono and counterpart:
            await _monolith_reads(run, mono, mesh, [counterpart])
    for n in (8, 16):
        spec = Spec(f"login-{n}", "POST /api/v1/login", n, post(gateway, logins, n))
        await attempt(run, "Meshplate", groups, spec, quiet=quiet)
        if mono and n == 8:
            spec = Spec(
                "monolith-login-8", "POST /api/v1/login", 8, post(mono.url, login(*ADMIN), 8)
            )
            await attempt(run, "monolith", mono.groups, spec, quiet=mesh.groups)


async def _grpc(run: Run, mesh: Meshplate, quiet: Sequence[Group]) -> None:
    """CheckLimit called directly, right after the bare server answering the same calls."""
    # Both over mutual TLS, called as the gateway calls ratelimit.
    caller = mesh.tls("gateway")
    async with ref_grpc.serving(mesh.tls("ratelimit")) as (port, pid):
        spec = Spec(
            "ref-grpc",
            "bare grpc.aio server answering CheckLimit",
            CONNECTIONS,
            lambda: run_grpc_load(f"127.0.0.1:{port}", tls=caller, duration_s=DURATION_S),
            unit="call",
        )
        await attempt(run, "ref-grpc", [tree("ref-grpc", pid)], spec, quiet=[*mesh.groups, *quiet])
    target = f"127.0.0.1:{mesh.stack.ports['ratelimit']}"
    spec = Spec(
        "check-limit",
        "ratelimit CheckLimit over gRPC",
        CONNECTIONS,
        lambda: run_grpc_load(target, tls=caller, duration_s=DURATION_S),
        unit="call",
    )
    reads = await redis_reads(mesh.redis_url)
    await attempt(run, "Meshplate", mesh.groups, spec, quiet=quiet)
    if (checks := run.results.get("check-limit")) and checks.ok:
        run.redis_reads_per_check = (await redis_reads(mesh.redis_url) - reads) / checks.ok
        run.facts["Redis reads processed per CheckLimit"] = f"{run.redis_reads_per_check:.2f}"


async def _writes(
    run: Run, mesh: Meshplate, quiet: Sequence[Group], users_db: str
) -> dict[str, tuple[Memory, Memory]]:
    """Sign-ups, then the jobs run by two workers (the second one started for them, whose
    memory is returned)."""
    for n in (8, 16):
        script = lua.sign_ups(f"s{n}t", PASSWORD)
        spec = Spec(f"signup-{n}", "POST /api/v1/user (sign-ups)", n, post(mesh.gateway, script, n))
        await attempt(run, "Meshplate", mesh.groups, spec, quiet=quiet)
    run.password_hash = await password_hash(users_db)
    async with second_worker(mesh) as worker:
        idle = rss([worker])
        spec = Spec(
            "jobs",
            f"{JOBS:,} sample jobs by two workers (latency: enqueued to done)",
            CONNECTIONS,
            lambda: run_jobs(mesh.gateway, mesh.redis_url, count=JOBS, connections=CONNECTIONS),
            unit="job",
        )
        await attempt(run, "Meshplate", [*mesh.groups, worker], spec, quiet=quiet)
        return {worker.name: (idle[worker.name], rss([worker])[worker.name])}


async def _monolith_reads(run: Run, mono: Monolith, mesh: Meshplate, keys: Sequence[str]) -> None:
    """The monolith's routes worth comparing (its README), loaded alike, Meshplate idle."""
    bearer = {"Authorization": f"Bearer {mono.token}"}
    routes = {
        "monolith-me": (f"GET {ME}", f"{mono.url}{ME}", bearer),
        "monolith-posts": (
            "GET /api/v1/admin/posts, anonymous",
            f"{mono.url}/api/v1/admin/posts",
            None,
        ),
        "monolith-user": (
            "GET /api/v1/user/admin, anonymous",
            f"{mono.url}/api/v1/user/admin",
            None,
        ),
    }
    await get_each(
        run,
        "monolith",
        mono.groups,
        [(key, *routes[key]) for key in keys],
        quiet=mesh.groups,
    )


@pytest.fixture
def database_urls(make_database: Callable[[str], str]) -> dict[str, str]:
    return {name: make_database(f"bench_{name}") for name in ("auth", "users", "ratelimit")}


@pytest.fixture
def plaintext_database_urls(make_database: Callable[[str], str]) -> dict[str, str]:
    return {name: make_database(f"bench_plain_{name}") for name in ("auth", "users", "ratelimit")}


async def _plaintext(
    run: Run, redis_url: str, database_urls: dict[str, str], quiet: Sequence[Group]
) -> None:
    """The cost of mutual TLS: `/me` at the gateway of a stack whose gRPC hops are plaintext
    (GRPC_PLAINTEXT, allowed locally), loaded right before the real stack's `/me` (its Redis
    emptied after, as the real stack's keys would collide with its copies)."""
    async with meshplate(redis_url, database_urls, GRPC_PLAINTEXT="true") as plain:
        if plain.missing:
            run.errors.append(f"plaintext: not running: {plain.missing}:\n{output(plain.stack)}")
        await seed(plain)
        bearer = {"Authorization": f"Bearer {plain.token}"}
        await get_each(
            run,
            "Meshplate",
            plain.groups,
            [
                (
                    "me-plaintext",
                    f"GET {ME} at the gateway, plaintext gRPC",
                    f"{plain.gateway}{ME}",
                    bearer,
                )
            ],
            quiet=quiet,
        )
    async with Redis.from_url(redis_url) as redis:
        await redis.flushdb()


def _tls_cost(run: Run) -> None:
    """mTLS against plaintext on `/me`, as facts (the docs' figure; not a target)."""
    tls, plain = run.results.get("me-gateway"), run.results.get("me-plaintext")
    if tls is None or plain is None or not plain.rate:
        return
    run.facts["mTLS on /me at the gateway"] = (
        f"{tls.rate:,.0f} req/s against {plain.rate:,.0f} plaintext ({tls.rate / plain.rate:.2f}x); "
        f"CPU {tls.cpu_sum:.2f} against {plain.cpu_sum:.2f} ms per request over every process"
    )


@pytest.mark.timeout(BUDGET_S)
async def test_meshplate_meets_the_targets_of_issue_11(
    flushed_redis: str, database_urls: dict[str, str], plaintext_database_urls: dict[str, str]
) -> None:
    ensure_wrk()
    with cancelled_by_sigterm():
        when, run, folder = datetime.datetime.now(), Run(), kit()
        async with contextlib.AsyncExitStack() as stack:
            mono: Monolith | None = None
            if folder:
                try:
                    mono = await stack.enter_async_context(monolith(folder))
                except Exception as exc:  # Meshplate's figures are reported all the same
                    run.errors.append(f"the monolith: {exc!r}"[:2000])
            quiet = mono.groups if mono else []
            mono_idle = rss(mono.groups) if mono else {}
            await _plaintext(run, flushed_redis, plaintext_database_urls, quiet)
            async with meshplate(flushed_redis, database_urls) as mesh:
                if mesh.missing:
                    run.errors.append(f"not running: {mesh.missing}:\n{output(mesh.stack)}")
                run.facts |= {f"Meshplate's {name}": where for name, where in mesh.servers.items()}
                idle = rss(mesh.groups)
                await seed(mesh)
                await _http(run, mesh, mono)
                await _grpc(run, mesh, quiet)
                try:
                    run.users_start_s = await users_start_s(mesh)
                except Exception as exc:  # reported with the other errors
                    run.errors.append(f"users start: {exc!r}"[:1000])
                second = await _writes(run, mesh, quiet, database_urls["users"])
                after = rss(mesh.groups)
                run.rss |= {name: (idle[name], after[name]) for name in idle} | second
            if mesh.exit_code != 0:
                run.errors.append(
                    f"the runner stopped with {mesh.exit_code}:\n{output(mesh.stack)}"
                )
            if mono:
                mono_after = rss(mono.groups)
                run.rss |= {name: (mono_idle[name], mono_after[name]) for name in mono_idle}
    _tls_cost(run)
    targets = check(run, monolith=folder is not None)
    run.facts |= {f"error {n}": error for n, error in enumerate(run.errors, 1)}
    text = summary(run, targets, when=when)
    show(text)
    show(f"written to {write(text, when=when)}")
    failed = [f"{t.text}: {t.measured}" for t in targets if t.met is False] + run.errors
    assert not failed, "\n".join(["missed targets and errors:", *failed])
