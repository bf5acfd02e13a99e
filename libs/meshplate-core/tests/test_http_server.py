"""serve_http as a real process: a stop with a drain keeps answering (telling the proxy to go
elsewhere) until the traffic has gone, a second signal or no drain stops at once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import textwrap
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from meshplate_core.probe import http_ok
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port

APP = textwrap.dedent(
    """
    import sys

    from meshplate_core.http_server import serve_http


    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


    serve_http(app, host="127.0.0.1", port=int(sys.argv[1]), grace_s=5, drain_s=float(sys.argv[2]))
    """
)


@contextlib.asynccontextmanager
async def _served(tmp_path: Path, drain_s: float) -> AsyncIterator[tuple[ServiceProcess, str]]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    port = free_port()
    process = ServiceProcess(str(script), str(port), str(drain_s), env={}, script=True)
    await process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        await process.wait_until(partial(http_ok, f"{url}/"), timeout_s=20)
        yield process, url
    finally:
        with contextlib.suppress(ProcessLookupError):
            await process.kill()


async def test_a_draining_server_answers_until_its_traffic_stops_and_tells_proxies_to_leave(
    tmp_path: Path,
) -> None:
    async with _served(tmp_path, drain_s=30) as (process, url), httpx.AsyncClient() as client:
        process.send_signal(signal.SIGTERM)
        # Traffic for longer than the quiet second that would end the drain: all of it served.
        answers = []
        for _ in range(15):
            answers.append(await client.get(f"{url}/api"))
            await asyncio.sleep(0.2)
        health = await client.get(f"{url}/health")
        # Then no request for a while: the process stops long before the 30 s drain is up.
        code = await process.wait(timeout_s=15)

    assert [a.status_code for a in answers] == [200] * 15
    assert {a.headers["connection"] for a in answers} == {"close"}
    assert {a.headers["x-envoy-immediate-health-check-fail"] for a in answers} == {"true"}
    assert (health.status_code, health.json()) == (503, {"status": "draining"})
    assert health.headers["cache-control"] == "no-store"
    assert code == 0


async def test_a_second_signal_ends_the_drain_at_once(tmp_path: Path) -> None:
    async with _served(tmp_path, drain_s=600) as (process, url), httpx.AsyncClient() as client:
        process.send_signal(signal.SIGTERM)
        during = await client.get(f"{url}/api")
        process.send_signal(signal.SIGINT)
        code = await process.wait(timeout_s=15)

    assert during.status_code == 200
    assert code == 0


async def test_without_a_drain_a_stop_closes_the_port_at_once(tmp_path: Path) -> None:
    async with _served(tmp_path, drain_s=0) as (process, url), httpx.AsyncClient() as client:
        process.send_signal(signal.SIGTERM)
        code = await process.wait(timeout_s=15)
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{url}/api")

    assert code == 0
