"""The monolith Meshplate replaces: the FastAPI boilerplate kit named by MONOLITH_KIT, driven by
its `monolith.sh`. Started for a block unless it is already up (then it is used as it is and left
running), stopped at the end when the block started it, even on failure. Its processes are
counted as three groups: uvicorn with its workers, its PostgreSQL, its Redis.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Group, postgres, tree

# The first start builds the kit's virtualenv (pip: about 30 s from a local index).
START_TIMEOUT_S = 300
# Its README: the first admin, and the password of its login form.
ADMIN = ("admin", "!Ch4ng3Th1sP4ssW0rd!")


@dataclass(frozen=True)
class Monolith:
    """A running monolith: its URL, an admin token and its process groups."""

    url: str
    token: str
    groups: list[Group]


def kit() -> Path | None:
    """The kit's folder (MONOLITH_KIT), when set."""
    folder = os.environ.get("MONOLITH_KIT")
    return Path(folder) if folder else None


async def _run(kit: Path, command: str, *, timeout_s: float = 60) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(kit / "monolith.sh"),
        command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"monolith.sh {command} took over {timeout_s:.0f} s") from None
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


def _pid(status: str, name: str) -> int:
    found = re.search(rf"^{name}\s+up\s+\(.*pid (\d+)\)$", status, re.M)
    assert found, f"monolith.sh status names no {name} pid:\n{status}"
    return int(found[1])


def _groups(status: str) -> list[Group]:
    return [
        tree("monolith", _pid(status, "uvicorn")),
        postgres("monolith postgres", _pid(status, "postgres")),
        tree("monolith redis", _pid(status, "redis")),
    ]


async def _up(kit: Path) -> Monolith:
    code, status = await _run(kit, "status")
    assert code == 0, f"monolith.sh status:\n{status}"
    url = re.search(r"^uvicorn\s+up\s+\((http://[^,]+),", status, re.M)
    assert url, status
    code, token = await _run(kit, "token")
    assert code == 0, f"monolith.sh token:\n{token}"
    return Monolith(url=url[1], token=token.strip().splitlines()[-1], groups=_groups(status))


@asynccontextmanager
async def monolith(kit: Path) -> AsyncIterator[Monolith]:
    """The monolith for a block (started and stopped by it unless it was already up)."""
    code, _ = await _run(kit, "status")
    started = code != 0
    try:
        if started:
            code, output = await _run(kit, "start", timeout_s=START_TIMEOUT_S)
            assert code == 0, f"monolith.sh start:\n{output}"
        yield await _up(kit)
    finally:
        if started:
            await _run(kit, "stop", timeout_s=120)
