"""`make bench`: how soon a logout on one gateway is refused by another (target: within 100 ms,
issue #3), against a baseline measured in the same run, one authenticated request's round trip.

Not part of `make test` (pytest collects `test_*.py`; `make bench` names this file). The stack is
the end-to-end tests' one: every service in this process, on real PostgreSQL, Redis and gRPC; the
two gateways are reached directly, not through Envoy. A logout travels: the gateway's Logout RPC,
auth's outbox, the `auth.revocations` stream, the other gateway's follower. The figure is the time
from the logout's answer to the first 401 of the other gateway, polled without pause.
"""

from __future__ import annotations

import time

import httpx

from .conftest import Stack, serve_gateway
from .identity import bearer, log_in, logout, sign_up
from .measure import line, p50, p95, report, timed

LOGOUTS = 40
BASELINE_REQUESTS = 200
TARGET_S = 0.1


async def _until_refused(client: httpx.AsyncClient, access: str) -> float:
    since = time.perf_counter()
    while True:
        response, _ = await timed(client.get("/api/v1/user/me/", headers=bearer(access)))
        if response.status_code == 401:
            return time.perf_counter() - since
        assert response.status_code == 200, response.text
        assert time.perf_counter() - since < 5, "a revocation did not reach the other gateway"


async def test_a_logout_is_refused_by_another_gateway_within_100_ms(stack: Stack) -> None:
    async with (
        serve_gateway(stack.gateway_settings) as second_url,
        stack.client(stack.gateway_url) as first,
        stack.client(second_url) as second,
    ):
        await sign_up(first, "ann")
        access, _ = await log_in(first, "ann")
        baseline = []
        for _ in range(BASELINE_REQUESTS):
            response, elapsed = await timed(second.get("/api/v1/user/me/", headers=bearer(access)))
            assert response.status_code == 200
            baseline.append(elapsed)
        propagation = []
        # One user per logout: logins are limited per address and username.
        for n in range(LOGOUTS):
            await sign_up(first, f"user{n}")
            access, cookie = await log_in(first, f"user{n}")
            assert (await second.get("/api/v1/user/me/", headers=bearer(access))).status_code == 200
            await logout(first, access, cookie)
            propagation.append(await _until_refused(second, access))

    base = p50(baseline)
    report(
        f"revocation across gateways; {LOGOUTS} logouts",
        line("baseline: GET /user/me/ p50", base),
        line("logout -> refused p50", p50(propagation), base),
        line("logout -> refused p95", p95(propagation), base),
        line("logout -> refused max", max(propagation), base),
    )
    assert p95(propagation) < TARGET_S
