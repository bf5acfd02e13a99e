"""wrk, the HTTP load generator of `make bench` (the distribution's package: no Python in the
load path): installed when missing, run with a script of bench.lua, its output parsed."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshplate_testing.packages import installed

THREADS = 2
# A request slower than this counts as a timeout (wrk's default, 2 s, is short for logins).
TIMEOUT_S = 10
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


def ensure_wrk() -> str:
    """The wrk binary: installed with apt-get when missing and this process is root, else the
    session stops with a one-line hint."""
    if missing := installed(["wrk"], commands=["wrk"]):
        pytest.exit(f"make bench needs wrk: {missing}", returncode=3)
    found = shutil.which("wrk")
    assert found
    return found


@dataclass(frozen=True)
class Answers:
    """What one wrk run got: answers by status, latency percentiles, socket errors."""

    seconds: float
    statuses: Counter[int]
    socket_errors: int
    p50_s: float
    p90_s: float
    p99_s: float

    @property
    def ok(self) -> int:
        """Answers below 400."""
        return sum(n for status, n in self.statuses.items() if status < 400)

    @property
    def answered(self) -> int:
        """Requests that got an answer, whatever its status."""
        return sum(self.statuses.values())

    @property
    def rate(self) -> float:
        """Answers below 400 per second."""
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def failures(self) -> dict[str, int]:
        """Answers of 400 and more by status, and requests that got none (`socket`)."""
        failed = {str(status): n for status, n in sorted(self.statuses.items()) if status >= 400}
        return failed | ({"socket": self.socket_errors} if self.socket_errors else {})


def _seconds(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse(output: str) -> Answers:
    """The figures of wrk's output (run with --latency and a bench.lua script)."""
    done = re.search(rf"(\d+) requests in {_DURATION}", output)
    if done is None:
        raise AssertionError(f"wrk printed no summary:\n{output}")
    percentiles = {
        int(share): _seconds(value, unit)
        for share, value, unit in re.findall(rf"^\s+(\d+)%\s+{_DURATION}\s*$", output, re.M)
    }
    errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    statuses: Counter[int] = Counter(
        {int(code): int(n) for code, n in re.findall(r"^status (\d+) (\d+)$", output, re.M)}
    )
    return Answers(
        seconds=_seconds(done[2], done[3]),
        statuses=statuses,
        socket_errors=sum(int(n) for n in errors.groups()) if errors else 0,
        p50_s=percentiles.get(50, 0.0),
        p90_s=percentiles.get(90, 0.0),
        p99_s=percentiles.get(99, 0.0),
    )


async def run_wrk(
    url: str,
    script: str,
    *,
    connections: int,
    duration_s: float,
    headers: Mapping[str, str] | None = None,
    stop_when: Callable[[], bool] | None = None,
) -> Answers:
    """Load `url` with `connections` for `duration_s` seconds (or, with `stop_when`, until it
    is true: wrk is then interrupted, and its figures cover the time until then)."""
    folder = Path(tempfile.mkdtemp(prefix="meshplate-wrk-"))
    (folder / "script.lua").write_text(script)
    command = [
        ensure_wrk(),
        f"-t{min(THREADS, connections)}",
        f"-c{connections}",
        f"-d{duration_s:.0f}s",
        f"--timeout={TIMEOUT_S}s",
        "--latency",
        "-s",
        str(folder / "script.lua"),
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    process = await asyncio.create_subprocess_exec(
        *command, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(duration_s + 60):
            if stop_when is not None:
                while process.returncode is None and not stop_when():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(process.wait(), 0.1)
                if process.returncode is None:
                    process.send_signal(signal.SIGINT)
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        shutil.rmtree(folder, ignore_errors=True)
    return parse(output.decode(errors="replace"))
