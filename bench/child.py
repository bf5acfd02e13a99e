"""A server of the bench's own (a reference, a second worker) as a child process: started in an
empty folder (no developer's `.env` is read) with the repository root importable, ready once its
port accepts connections, and always stopped (SIGTERM, then SIGKILL) when the block ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def cancelled_by_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM cancels the running task, so that everything it started is
    stopped as on Ctrl-C (by default the process would end at once, its children left running)."""
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _tail(path: str) -> str:
    return Path(path).read_text(errors="replace")[-2000:]


async def _listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def serving(
    argv: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 30,
    ready: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[int]:
    """Run `argv` until the block ends; its pid, once `port` accepts connections (or once
    `ready()` says so, asked every 20 ms)."""
    # Output to a file: a pipe nobody reads would fill up and stall the server.
    log = tempfile.NamedTemporaryFile(prefix="meshplate-bench-", suffix=".log", delete=False)  # noqa: SIM115
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=tempfile.mkdtemp(prefix="meshplate-bench-"),
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(timeout_s):
            while not await (ready() if ready else _listening(port)):
                if process.returncode is not None:
                    raise AssertionError(f"{argv} exited: {_tail(log.name)}")
                await asyncio.sleep(0.02 if ready else 0.1)
        yield process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()
        os.unlink(log.name)
