"""A service (or script) run as a real child process, read through its JSON log or plain output."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

LogLine = dict[str, Any]
T = TypeVar("T")


class ServiceProcess:
    """Starts `python -m <module>` (or `python <script>`), keeps its output, stops it with SIGTERM.

    It runs in an empty temporary folder, so no developer's `.env` is read and relative paths
    (SQLite files under `var/`) land there.
    """

    def __init__(
        self, module: str, *args: str, env: Mapping[str, str], script: bool = False
    ) -> None:
        self._command = [sys.executable, *([] if script else ["-m"]), module, *args]
        self._env = {**os.environ, "LOG_JSON": "true", **env}
        # Where it runs (made at start).
        self.cwd = Path()
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self.lines: list[LogLine] = []
        self.raw: list[str] = []

    async def start(self) -> None:
        """Start the process."""
        self.cwd = Path(tempfile.mkdtemp(prefix="meshplate-"))
        self._process = await asyncio.create_subprocess_exec(
            *self._command,
            env=self._env,
            cwd=self.cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # A process group of its own, as a command started from a terminal: `interrupt`
            # reaches it and its children, never the tests.
            process_group=0,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        while line := await self._process.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            self.raw.append(text)
            with contextlib.suppress(json.JSONDecodeError):
                self.lines.append(json.loads(text))
            self._changed.set()
        self._changed.set()

    async def wait_for_log(
        self, matches: Callable[[LogLine], bool], *, timeout_s: float
    ) -> LogLine:
        """The first JSON log line that `matches`, waiting for it up to `timeout_s`."""
        return await self._wait_for(lambda: self.lines, matches, timeout_s=timeout_s)

    async def wait_for_output(self, text: str, *, timeout_s: float) -> str:
        """The first line of output that contains `text`, waiting for it up to `timeout_s`."""
        return await self._wait_for(
            lambda: self.raw, lambda line: text in line, timeout_s=timeout_s
        )

    async def _wait_for(
        self, lines: Callable[[], list[T]], matches: Callable[[T], bool], *, timeout_s: float
    ) -> T:
        async with asyncio.timeout(timeout_s):
            while True:
                for line in lines():
                    if matches(line):
                        return line
                if self._process is not None and self._process.returncode is not None:
                    raise AssertionError(f"process exited: {self.output()}")
                self._changed.clear()
                await self._changed.wait()

    async def wait_until(self, ready: Callable[[], bool], *, timeout_s: float) -> None:
        """Ask `ready` (a blocking probe, run in a thread: `meshplate_core.probe.http_ok` or
        `grpc_serving`) every 0.1 s until it says yes; fail if the process exits first or
        `timeout_s` passes."""
        async with asyncio.timeout(timeout_s):
            while not await asyncio.to_thread(ready):
                if self._process is not None and self._process.returncode is not None:
                    raise AssertionError(f"process exited: {self.output()}")
                await asyncio.sleep(0.1)

    async def wait(self, *, timeout_s: float) -> int:
        """The exit code, once the process has ended by itself."""
        assert self._process is not None
        assert self._reader is not None
        async with asyncio.timeout(timeout_s):
            code = await self._process.wait()
            await self._reader
        return code

    async def terminate(self, *, timeout_s: float) -> int:
        """Send SIGTERM and return the exit code (killing it if it outlives `timeout_s`)."""
        assert self._process is not None
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGTERM)
        try:
            return await self.wait(timeout_s=timeout_s)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()
            raise

    def send_signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the process alone (its children, if any, are not signalled)."""
        assert self._process is not None
        self._process.send_signal(sig)

    async def interrupt(self, *, timeout_s: float) -> int:
        """Ctrl-C in its terminal: SIGINT to its whole process group; the exit code."""
        assert self._process is not None
        if self._process.returncode is None:
            os.killpg(self._process.pid, signal.SIGINT)
        return await self.wait(timeout_s=timeout_s)

    async def kill(self) -> int:
        """Send SIGKILL (a crash: no clean-up runs) and return once the process is gone."""
        assert self._process is not None
        if self._process.returncode is None:
            self._process.kill()
        return await self.wait(timeout_s=10)

    def output(self) -> str:
        """The last lines the process printed, for assertion messages."""
        return "\n".join(self.raw[-40:])
