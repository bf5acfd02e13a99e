"""A small HTTP/1.1 load generator for `make bench`: keep-alive connections, each sending one
prepared request again and again for a fixed time, on raw asyncio streams. It costs the machine
far less per request than the servers it measures (an httpx client was the bottleneck itself,
at a few hundred requests a second).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Load:
    """What the connections got: latencies of the expected answers, the others by status
    (0: the connection broke)."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: Counter[int] = field(default_factory=Counter)

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.seconds


def request(
    method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """The bytes of one HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", "Host: bench"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join([*lines, "", ""]).encode() + body


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for header in head.split(b"\r\n")[1:]:
        name, _, value = header.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            raise ValueError("chunked answers are not read here")
    await reader.readexactly(length)
    return int(head[9:12])


async def run_load(
    host: str,
    port: int,
    prepared: bytes,
    *,
    connections: int,
    duration_s: float,
    expected: int = 200,
) -> Load:
    """`connections` clients sending `prepared` for `duration_s` seconds."""
    load = Load()
    started = time.perf_counter()
    stop_at = started + duration_s

    async def client() -> None:
        while time.perf_counter() < stop_at:
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                load.failures[0] += 1
                await asyncio.sleep(0.1)
                continue
            try:
                while time.perf_counter() < stop_at:
                    sent = time.perf_counter()
                    writer.write(prepared)
                    status = await _answer(reader)
                    if status == expected:
                        load.latencies.append(time.perf_counter() - sent)
                    else:
                        load.failures[status] += 1
            except (asyncio.IncompleteReadError, ConnectionError):
                load.failures[0] += 1
            finally:
                writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    load.seconds = time.perf_counter() - started
    return load
