"""`make soak`: issue #12's bounded soak. The stack of `make run` (separate processes, on
PostgreSQL and Redis, limits raised as for the bench) takes five minutes (`SOAK_S`) of mixed
traffic through Envoy: authenticated `/me` reads, anonymous pages of posts, sign-ups and logins,
posts written and jobs enqueued (which the worker runs), all at once. It must answer no 5xx and
no socket error, and the resident memory of every process must grow by less than 10% after the
warm-up (`SOAK_WARM_UP_S`, two minutes): the peak of the minute that ends the soak against the
peak of the minute after the warm-up, sampled every few seconds (users' memory swings by a tenth
with the password hashes in flight, which one sample at each end would read as growth or loss).
The largest process of each group is printed every 30 s.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence

import pytest

from bench import lua
from bench.child import cancelled_by_sigterm
from bench.loads import login
from bench.meshplate import PASSWORD, USERNAME, meshplate, seed
from bench.procs import Group, rss
from bench.wrk import Answers, ensure_wrk, run_wrk

SOAK_S = float(os.environ.get("SOAK_S", "300"))
WARM_UP_S = float(os.environ.get("SOAK_WARM_UP_S", "120"))
PRINT_S = 30.0
SAMPLE_S = 5.0
# The window at each end whose peak is compared.
WINDOW_S = 60.0
# Resident memory may grow by this share after the warm-up, per process group.
GROWTH = 0.10
# Groups whose memory is not Meshplate's to keep (shared servers, the runner relaying logs).
_NOT_OURS = {"redis", "postgres", "runner"}


async def _sample(groups: Sequence[Group], samples: list[tuple[float, dict[str, int]]]) -> None:
    # The largest process of each of our groups every SAMPLE_S, kept; printed every PRINT_S.
    started = time.monotonic()
    printed = 0.0
    while True:
        await asyncio.sleep(SAMPLE_S)
        now, at = rss(groups), time.monotonic() - started
        samples.append((at, {name: now[name].largest for name in now if name not in _NOT_OURS}))
        if at - printed >= PRINT_S:
            printed = at
            sizes = ", ".join(f"{name} {size >> 20}" for name, size in samples[-1][1].items())
            print(f"{at:4.0f} s, MiB: {sizes}", flush=True)  # noqa: T201


def _peaks(samples: list[tuple[float, dict[str, int]]], start: float, end: float) -> dict[str, int]:
    within = [sizes for at, sizes in samples if start <= at <= end]
    assert within, f"no sample between {start:.0f} and {end:.0f} s: SOAK_S too short?"
    return {name: max(sizes[name] for sizes in within) for name in within[0]}


@pytest.fixture
def database_urls(make_database: Callable[[str], str]) -> dict[str, str]:
    return {name: make_database(f"soak_{name}") for name in ("auth", "users", "ratelimit")}


@pytest.mark.timeout(SOAK_S + 600)
async def test_mixed_traffic_for_minutes_gives_no_5xx_and_memory_settles(
    flushed_redis: str, database_urls: dict[str, str]
) -> None:
    ensure_wrk()
    with cancelled_by_sigterm():
        async with meshplate(flushed_redis, database_urls) as mesh:
            await seed(mesh)
            edge, bearer = mesh.edge, {"Authorization": f"Bearer {mesh.token}"}
            post = lua.post(
                f"/api/v1/{USERNAME}/post",
                '{"title": "Soak", "text": "A post written while the soak runs."}',
                "application/json",
            )
            loads = {
                "me": run_wrk(f"{edge}/api/v1/user/me/", lua.counting(), connections=12,
                              duration_s=SOAK_S, headers=bearer),
                "posts": run_wrk(f"{edge}/api/v1/{USERNAME}/posts", lua.counting(),
                                 connections=8, duration_s=SOAK_S),
                "logins": run_wrk(edge, login(USERNAME, PASSWORD), connections=2,
                                  duration_s=SOAK_S),
                "sign-ups": run_wrk(edge, lua.sign_ups("soak", PASSWORD), connections=1,
                                    duration_s=SOAK_S),
                "writes": run_wrk(edge, post, connections=2, duration_s=SOAK_S, headers=bearer),
                "jobs": run_wrk(edge, lua.post("/api/v1/tasks/task?message=soak", "", "text/plain"),
                                connections=2, duration_s=SOAK_S),
            }  # fmt: skip
            running = asyncio.gather(*loads.values())
            samples: list[tuple[float, dict[str, int]]] = []
            sampling = asyncio.ensure_future(_sample(mesh.groups, samples))
            answers: list[Answers] = await running
            sampling.cancel()
        assert mesh.exit_code == 0

    by_load = dict(zip(loads, answers, strict=True))
    for name, load in by_load.items():
        print(f"{name}: {load.answered} answers, {dict(sorted(load.statuses.items()))}")  # noqa: T201
    warm = _peaks(samples, WARM_UP_S, WARM_UP_S + WINDOW_S)
    after = _peaks(samples, SOAK_S - WINDOW_S, SOAK_S)
    for name in warm:
        print(f"{name}: peak {warm[name] >> 20} -> {after[name] >> 20} MiB")  # noqa: T201
    server_errors = Counter(
        {f"{name} {status}": n for name, load in by_load.items()
         for status, n in load.statuses.items() if status >= 500}
    )  # fmt: skip
    assert not server_errors, server_errors
    assert not {name: load.socket_errors for name, load in by_load.items() if load.socket_errors}
    assert all(load.ok > 0 for load in by_load.values()), by_load
    grown = {
        name: f"{warm[name] >> 20} -> {after[name] >> 20} MiB"
        for name in warm
        if after[name] > warm[name] * (1 + GROWTH)
    }
    assert not grown, grown
