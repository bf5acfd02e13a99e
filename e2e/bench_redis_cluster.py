"""`make bench`: the rate limiter's counting on a Redis Cluster against one Redis server, measured
in the same run (docs/deploying.md sizes Redis Cluster with these figures).

Not part of `make test`. A limiter (ratelimit's own, in this process, as one ratelimit replica
runs it) decides checks of 1,000 subjects from concurrent callers, for a fixed time, against:
- one Redis server, one shard: the baseline;
- a cluster of three masters (each with a replica), one shard: every counter in one slot;
- the same cluster, three shards (RATELIMIT_REDIS_SHARDS=3): each master counts a third.
Figures: checks per second, this process's CPU per check, and each Redis master's CPU per check
(from /proc). Targets: on the cluster with three shards no master spends more than 0.6x the CPU
per check that the one server does (the counting is spread, not copied; a call's own cost is paid
per shard, so a third is out of reach), and the limiter decides at least half as many checks per
second as on one server (it pays a call per shard per batch, through the cluster client).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from dataclasses import dataclass

from bench.procs import cpu_s
from meshplate_core.database import open_engine
from meshplate_core.redis_client import connect
from meshplate_core.transactions import Database
from meshplate_testing.redis_cluster import running_redis_cluster
from meshplate_testing.servers import running_redis
from ratelimit.limiter import Limiter
from ratelimit.shards import Shards

from .measure import report

CALLERS = 32
SUBJECTS = [f"user:{n}" for n in range(1000)]
RUN_S = 4.0


@dataclass(frozen=True)
class Result:
    """One configuration's figures."""

    label: str
    checks: int
    seconds: float
    limiter_cpu_s: float
    # Each Redis server's (master's) CPU seconds during the run.
    redis_cpu_s: list[float]

    @property
    def rate(self) -> float:
        return self.checks / self.seconds

    def per_check_ms(self, cpu_s: float) -> float:
        return cpu_s / self.checks * 1000

    def line(self) -> str:
        masters = " ".join(f"{self.per_check_ms(s):.3f}" for s in self.redis_cpu_s)
        return (
            f"  {self.label:<26}{self.rate:9,.0f} checks/s   limiter "
            f"{self.per_check_ms(self.limiter_cpu_s):.3f} ms/check   Redis ms/check: {masters}"
        )


async def _run(label: str, url: str, shards: int, database_url: str, pids: list[int]) -> Result:
    engine = open_engine(database_url, pool_size=2, application_name="bench-cluster")
    redis = connect(url, socket_timeout=5, socket_connect_timeout=5)
    limiter = Limiter(
        database=Database(engine),
        redis=redis,
        default_limit=1_000_000,
        default_period_s=60,
        fail_open=False,
        redis_timeout_s=5,
        batch_linger_s=0.001,
        shards=Shards.spread(shards),
    )
    checks = 0
    stop = asyncio.Event()

    async def caller() -> None:
        nonlocal checks
        while not stop.is_set():
            await limiter.check(random.choice(SUBJECTS), None, "/api/v1/x", 1)
            checks += 1

    try:
        # Warm: connections opened, scripts loaded, rules read.
        await asyncio.gather(*(limiter.check(s, None, "/api/v1/x", 1) for s in SUBJECTS[:50]))
        me = os.getpid()
        limiter_before = cpu_s(me)
        redis_before = [cpu_s(pid) for pid in pids]
        checks, started = 0, time.perf_counter()
        callers = [asyncio.create_task(caller()) for _ in range(CALLERS)]
        await asyncio.sleep(RUN_S)
        stop.set()
        await asyncio.gather(*callers)
        seconds = time.perf_counter() - started
        return Result(
            label,
            checks,
            seconds,
            cpu_s(me) - limiter_before,
            [cpu_s(pid) - before for pid, before in zip(pids, redis_before, strict=True)],
        )
    finally:
        await limiter.close()
        await redis.aclose()
        await engine.dispose()


async def test_counting_spreads_over_a_cluster_s_masters(
    stack_database_urls: dict[str, str],
) -> None:
    database_url = stack_database_urls["ratelimit"]
    with running_redis() as server:
        assert server.pid is not None
        one = await _run("one server, 1 shard", server.url, 1, database_url, [server.pid])
    with running_redis_cluster() as cluster:
        masters = [node.process.pid for node in cluster.masters() if node.process]
        single_slot = await _run("cluster, 1 shard", cluster.url, 1, database_url, masters)
        spread = await _run("cluster, 3 shards", cluster.url, 3, database_url, masters)

    report(
        f"rate-limit counting on a Redis Cluster; {CALLERS} callers, {len(SUBJECTS)} subjects, "
        f"{RUN_S:.0f} s each",
        one.line(),
        single_slot.line(),
        spread.line(),
        f"  busiest master, 3 shards: {max(spread.redis_cpu_s) / spread.checks * 1000:.3f} ms/check"
        f" ({max(spread.redis_cpu_s) / spread.checks / (one.redis_cpu_s[0] / one.checks):.2f}x"
        " one server's); rate "
        f"{spread.rate / one.rate:.2f}x one server's",
    )
    busiest = max(spread.redis_cpu_s) / spread.checks
    assert busiest <= 0.6 * one.redis_cpu_s[0] / one.checks
    assert spread.rate >= 0.5 * one.rate
