"""The gRPC load generator of `make bench`: concurrent callers of CheckLimit for a fixed time, in
processes of their own (one Python process would be the bottleneck of a fast server), counted
together: calls/s, latency percentiles, failures by status code.

`python -m bench.grpc_load <target> <callers> <seconds> <index> [<tls folder>]` is one such
process (calling as the workload of the TLS folder, over mutual TLS, when given): it connects,
makes one call, prints `ready`, waits for a line on its input, calls for the given seconds, then
prints its figures as one JSON line. `run_grpc_load()` runs several at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.child import ROOT
from e2e.measure import p50, p90, p99
from meshplate.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from meshplate_core.mtls import Tls

DEADLINE_S = 5.0


@dataclass(frozen=True)
class Calls:
    """What the callers got."""

    seconds: float
    latencies_s: list[float]
    failures: dict[str, int]

    @property
    def ok(self) -> int:
        return len(self.latencies_s)

    @property
    def answered(self) -> int:
        return self.ok + sum(self.failures.values())

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def p50_s(self) -> float:
        return p50(self.latencies_s) if self.ok > 1 else 0.0

    @property
    def p90_s(self) -> float:
        return p90(self.latencies_s) if self.ok > 1 else 0.0

    @property
    def p99_s(self) -> float:
        return p99(self.latencies_s) if self.ok > 1 else 0.0


def _channel(target: str, tls: Tls | None) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(target)
    override = [("grpc.ssl_target_name_override", "ratelimit")]
    return grpc.aio.secure_channel(target, tls.channel_credentials(), options=override)


async def _call_for(
    target: str, callers: int, seconds: float, index: int, tls: Tls | None
) -> dict[str, Any]:
    async with _channel(target, tls) as channel:
        stub = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
        requests = [
            ratelimit_pb2.CheckLimitRequest(
                subject=f"user:bench-{index}-{n}", path="/api/v1/user/me/", hits=1
            )
            for n in range(callers)
        ]
        await stub.CheckLimit(requests[0], timeout=DEADLINE_S)
        print("ready", flush=True)  # noqa: T201
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        latencies: list[float] = []
        failures: Counter[str] = Counter()
        started = time.perf_counter()
        stop_at = started + seconds

        async def caller(request: ratelimit_pb2.CheckLimitRequest) -> None:
            while (sent := time.perf_counter()) < stop_at:
                try:
                    await stub.CheckLimit(request, timeout=DEADLINE_S)
                except grpc.aio.AioRpcError as exc:
                    failures[exc.code().name] += 1
                else:
                    latencies.append(round(time.perf_counter() - sent, 6))

        await asyncio.gather(*(caller(request) for request in requests))
        elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "latencies": latencies, "failures": failures}


async def run_grpc_load(
    target: str, *, tls: Tls | None, processes: int = 2, callers: int = 32, duration_s: float
) -> Calls:
    """`processes` x `callers` concurrent CheckLimit callers of `target` for `duration_s`
    (calling as the workload of `tls`)."""
    command = [sys.executable, "-m", "bench.grpc_load", target, str(callers), str(duration_s)]
    children = [
        await asyncio.create_subprocess_exec(
            *command,
            str(index),
            *([str(tls.folder)] if tls else []),
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for index in range(processes)
    ]
    try:
        async with asyncio.timeout(30):
            for child in children:
                assert child.stdout is not None
                assert await child.stdout.readline() == b"ready\n", "a gRPC caller did not start"
        for child in children:
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        async with asyncio.timeout(duration_s + 30):
            done = await asyncio.gather(*(child.communicate() for child in children))
        outputs = [json.loads(stdout) for stdout, _ in done]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                with contextlib.suppress(ProcessLookupError):
                    await child.wait()
    failures: Counter[str] = Counter()
    for output in outputs:
        failures.update(output["failures"])
    return Calls(
        seconds=max(output["seconds"] for output in outputs),
        latencies_s=[latency for output in outputs for latency in output["latencies"]],
        failures=dict(failures),
    )


if __name__ == "__main__":
    target, callers, seconds, index = sys.argv[1:5]
    tls = Tls(Path(sys.argv[5])) if len(sys.argv) > 5 else None
    result = asyncio.run(_call_for(target, int(callers), float(seconds), int(index), tls))
    print(json.dumps(result), flush=True)  # noqa: T201
