"""`make bench`: what the whole stack, as the separate processes of `make run` on PostgreSQL and
Redis, serves on this machine, against DESIGN.md's figures for the monolith it replaces (an
authenticated `GET /api/v1/user/me/` at ~400 requests/s with a p99 of ~0.8 s at 64 connections;
3.6 logins/s) and against a baseline of the same run: the gateway's `/health`, a route of the
same process that calls nothing.

Requests go to the gateway directly (as the monolith's figures were taken on its own server), 64
connections at a time for a fixed time. The load comes from this process, on the same two cores
as the services, so every figure is a floor of what a separate load generator would see. The
services log warnings only (a line per request would be read back by this process too).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

import httpx
import pytest

from .identity import PASSWORD, log_in, sign_up
from .load import Load, request, run_load
from .measure import line, p50, p99, report
from .runner import runner

CONNECTIONS = 64
# Logins at once that the cores can hash without a queue longer than a second.
LOGIN_CONNECTIONS = 8
DURATION_S = 10.0
# DESIGN.md, "Performance budget": the monolith on such a machine.
MONOLITH_ME_PER_S = 400
MONOLITH_ME_P99_S = 0.8
MONOLITH_LOGINS_PER_S = 3.6


def _rate(label: str, load: Load, baseline: Load | None = None) -> str:
    ratio = f"  ({load.per_s / baseline.per_s:.2f}x baseline)" if baseline else ""
    return f"  {label:<28}{load.per_s:8.1f} /s{ratio}"


@pytest.fixture
def database_urls(make_database: Callable[[str], str]) -> dict[str, str]:
    return {
        f"{name.upper()}_DATABASE_URL": make_database(f"bench_{name}")
        for name in ("auth", "users", "ratelimit")
    }


async def test_the_stack_outserves_the_monolith(
    flushed_redis: str, database_urls: dict[str, str]
) -> None:
    stack = runner(
        flushed_redis,
        **database_urls,
        LOG_LEVEL="WARNING",
        # The boilerplate's 10 an hour would stop the load at once; the limiter still decides
        # every request.
        DEFAULT_RATE_LIMIT_LIMIT="100000000",
        RATELIMIT_LOGIN_ATTEMPT_LIMIT="100000000",
    )
    await stack.process.start()
    try:
        await stack.process.wait_for_output("Meshplate is up", timeout_s=90)
        async with httpx.AsyncClient(base_url=stack.url("gateway")) as client:
            await sign_up(client, "ann")
            access, _ = await log_in(client, "ann")

        async def load(prepared: bytes, connections: int = CONNECTIONS) -> Load:
            return await run_load(
                "127.0.0.1",
                stack.ports["gateway"],
                prepared,
                connections=connections,
                duration_s=DURATION_S,
            )

        health = request("GET", "/health")
        await load(health)  # warm-up
        baseline = await load(health)
        me = await load(request("GET", "/api/v1/user/me/", {"Authorization": f"Bearer {access}"}))
        form = urlencode({"username": "ann", "password": PASSWORD}).encode()
        login = request(
            "POST", "/api/v1/login", {"Content-Type": "application/x-www-form-urlencoded"}, form
        )
        logins = await load(login, LOGIN_CONNECTIONS)
        # Far more at once than the cores can hash: the excess is refused at once (429).
        overload = await load(login)
    finally:
        code = await stack.process.terminate(timeout_s=30)

    assert all(x.latencies for x in (baseline, me, logins, overload)), "a load got no answer"
    report(
        f"the stack as processes, gateway direct; {DURATION_S:.0f} s each",
        _rate(f"baseline: GET /health ({CONNECTIONS})", baseline),
        _rate(f"GET /api/v1/user/me/ ({CONNECTIONS})", me, baseline),
        line("  p50", p50(me.latencies)),
        line("  p99", p99(me.latencies)),
        _rate(f"POST /api/v1/login ({LOGIN_CONNECTIONS})", logins, baseline),
        line("  p50", p50(logins.latencies)),
        line("  p99", p99(logins.latencies)),
        _rate(f"POST /api/v1/login ({CONNECTIONS})", overload, baseline),
        line("  p50", p50(overload.latencies)),
        f"  refused at once (429): {overload.failures[429]}",
        f"  failures: {dict(baseline.failures + me.failures + logins.failures) or 'none'}",
    )
    assert code == 0, stack.process.output()
    assert not (baseline.failures + me.failures + logins.failures)
    assert set(overload.failures) <= {429}, overload.failures
    assert me.per_s > MONOLITH_ME_PER_S
    assert p99(me.latencies) < MONOLITH_ME_P99_S
    assert logins.per_s > MONOLITH_LOGINS_PER_S
    assert overload.per_s > MONOLITH_LOGINS_PER_S
