"""What the `make bench` files share: timing a request, and how figures are printed."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Sequence

import httpx


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    """The response and the seconds it took."""
    started = time.perf_counter()
    response = await request
    return response, time.perf_counter() - started


def machine() -> str:
    """The machine the figures were measured on."""
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def p50(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def p90(samples: Sequence[float]) -> float:
    return statistics.quantiles(samples, n=10)[8]


def p95(samples: Sequence[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


def p99(samples: Sequence[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def line(label: str, seconds: float, baseline: float | None = None) -> str:
    """`label  12.34 ms  (2.0x baseline)`."""
    ratio = f"  ({seconds / baseline:.2f}x baseline)" if baseline else ""
    return f"  {label:<28}{seconds * 1000:8.2f} ms{ratio}"


def report(title: str, *lines: str) -> None:
    """The figures, under a title naming the machine (on stdout: `make bench` runs with -s)."""
    sys.stdout.write("\n".join([f"\n{title} ({machine()})", *lines]) + "\n")
