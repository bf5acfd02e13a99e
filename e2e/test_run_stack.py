"""`make run`'s runner: all five processes up, ready, usable, and stopped together."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import pty
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port

from .runner import RUNNER, runner

# The worker's figures once the welcome e-mail is sent.
WORKER_DONE = (
    'worker_jobs_total{kind="welcome-email",outcome="succeeded"}',
    'worker_queue_depth{kind="welcome-email",state="pending"} 0.0',
)


async def _scrape(port: int) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def test_runner_brings_up_the_stack_and_stops_every_process(flushed_redis: str) -> None:
    started = runner(flushed_redis, USERS_ARGON2_TIME_COST="1")
    process, ports, metrics = started.process, started.ports, started.metrics
    await process.start()
    try:
        await process.wait_for_output("Meshplate is up", timeout_s=60)
        # In through Envoy, the entry point.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['edge']}") as client:
            ready = await client.get("/health/ready")
            created = await client.post(
                "/api/v1/user",
                json={"name": "Ann", "username": "ann", "email": "a@b.io", "password": "12345678"},
            )
            # auth asks users to check the password: found where the runner put it.
            login = await client.post(
                "/api/v1/login", data={"username": "ann", "password": "12345678"}
            )
        # The worker sent the welcome e-mail to the runner's SMTP server, which printed it.
        mail = await process.wait_for_output("mail      | To: Ann <a@b.io>", timeout_s=20)
        scraped = {name: await _scrape(port) for name, port in metrics.items()}
        scraped["gateway"] = await _scrape(ports["gateway"])
        # The mail server prints the message before the worker has its answer and records the
        # job: the worker's figures are read once they show it.
        async with asyncio.timeout(10):
            while True:
                scraped["worker"] = await _scrape(ports["worker"])
                if all(line in scraped["worker"] for line in WORKER_DONE):
                    break
                await asyncio.sleep(0.1)
        scraped["envoy"] = await _scrape(ports["edge-stats"])
    finally:
        code = await process.terminate(timeout_s=30)

    assert ready.status_code == 200, process.output()
    assert created.status_code == 201
    assert login.status_code == 200, login.text
    assert mail
    # Envoy's access log, among the runner's output.
    edge_log = [
        json.loads(payload)
        for line in process.raw
        if line.startswith("envoy ") and (payload := line.split("| ", 1)[1]).startswith("{")
    ]
    assert {"method": "POST", "path": "/api/v1/user", "status": 201}.items() <= next(
        entry.items() for entry in edge_log if entry["path"] == "/api/v1/user"
    )
    # Every process shows its requests, and the domain's own counts.
    assert (
        'http_requests_total{method="POST",route="/api/v1/user",status="201"} 1.0'
        in scraped["gateway"]
    )
    assert 'grpc_method="CreateUser"' in scraped["users"]
    assert "users_cache_events_total" in scraped["users"]
    assert 'grpc_method="GetJwks"' in scraped["auth"]
    assert 'ratelimit_decisions_total{outcome="allowed"}' in scraped["ratelimit"]
    assert all(line in scraped["worker"] for line in WORKER_DONE)
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="gateway"}' in scraped["envoy"]
    assert code == 0, process.output()
    assert not any(_listening(port) for port in [*ports.values(), *metrics.values()])


async def test_runner_without_redis_says_so_in_one_line() -> None:
    runner = ServiceProcess(
        RUNNER, env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}, script=True
    )
    await runner.start()

    code = await runner.wait(timeout_s=30)

    assert code == 1
    assert len(runner.raw) == 1
    assert runner.raw[0].startswith("run: no Redis answers at redis://127.0.0.1:")


async def test_ctrl_c_stops_everything_cleanly_and_leaves_nothing_behind(
    flushed_redis: str, tmp_path: Path
) -> None:
    started = runner(flushed_redis, USERS_ARGON2_TIME_COST="1", TMPDIR=str(tmp_path))
    process, ports = started.process, started.ports
    await process.start()
    try:
        await process.wait_for_output("Meshplate is up", timeout_s=60)
    finally:
        code = await process.interrupt(timeout_s=30)

    assert code == 0, process.output()
    assert not [line for line in process.raw if "stopped with code" in line]
    assert not any(_listening(port) for port in ports.values())
    # The edge's config, written for this run, went with it.
    assert os.listdir(tmp_path) == []


@pytest.mark.timeout(120)
def test_make_run_in_a_terminal_exits_0_on_ctrl_c(flushed_redis: str, tmp_path: Path) -> None:
    # A terminal's Ctrl-C goes to its whole foreground group, make included: make, interrupted,
    # would end with "*** [run] Interrupt" and status 130 however cleanly the stack stopped.
    started = runner(flushed_redis, USERS_ARGON2_TIME_COST="1", TMPDIR=str(tmp_path))

    code, output = _make_run_in_a_terminal(started.env)

    assert code == 0, _summary(output)
    assert "run: stopping every service" in output
    assert "Interrupt" not in output
    assert not any(_listening(port) for port in started.ports.values())


def _summary(output: str) -> str:
    """What a failed run printed, shortened: the runner's and the test's own lines, then the
    terminal's last lines."""
    own = [
        line
        for line in output.splitlines()
        if line.startswith(("run:", "[test]", "make", "Meshplate is up"))
    ]
    return "\n".join([*own, "...", output[-1500:]])


def _make_run_in_a_terminal(env: dict[str, str], up_within_s: float = 60) -> tuple[int, str]:
    """`make run` on a pseudo-terminal, Ctrl-C typed once the stack is up (or once `up_within_s`
    has passed, so a stack that never comes up still stops and shows its output): its exit
    status and what the terminal showed."""
    controller, terminal = pty.openpty()
    # `setsid --ctty` makes the terminal make's controlling one, as a shell would; no Python runs
    # between fork and exec (this process has gRPC's threads: a fork that ran Python could hang).
    make = subprocess.Popen(
        ["setsid", "--ctty", "make", "--no-print-directory", "run"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        cwd=Path(__file__).parents[1],
        env={**os.environ, **env},
    )
    os.close(terminal)
    output, typed_at = b"", None
    started = time.monotonic()
    try:
        while make.poll() is None or select.select([controller], [], [], 0)[0]:
            if select.select([controller], [], [], 0.5)[0]:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal's other end closed: make has ended
                    break
                if not chunk:
                    break
                output += chunk
            now = time.monotonic()
            if typed_at is None and (
                b"Ctrl-C stops everything" in output or now - started > up_within_s
            ):
                os.write(controller, b"\x03")  # what the terminal sends for Ctrl-C
                typed_at = now
                output += f"\n[test] Ctrl-C typed {now - started:.1f} s after the start\n".encode()
            elif typed_at is not None and now - typed_at > 40:
                _kill_tree(make.pid)
                output += b"\n[test] make still running 40 s after Ctrl-C: killed\n"
                break
        code = make.wait(timeout=10)
    finally:
        os.close(controller)
    return code, output.decode(errors="replace")


def _kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process descended from it: the runner and the services it
    started have left make's process group, so killing the group would leave them running."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # "pid (command) state ppid ...": the command may hold spaces and parentheses
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree = {pid}
    while grown := {child for child, parent in parents.items() if parent in tree} - tree:
        tree |= grown
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def test_a_process_that_will_not_stop_is_killed_with_its_process_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As a gateway's supervisor with a worker process stuck in its start: neither takes SIGTERM.
    spec = importlib.util.spec_from_file_location("run_stack", RUNNER)
    assert spec is not None
    assert spec.loader is not None
    run_stack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_stack)
    monkeypatch.setattr(run_stack, "STOP_TIMEOUT_S", 0.5)
    with subprocess.Popen(
        ["bash", "-c", "trap '' TERM; sleep 300 & echo started; wait"],
        stdout=subprocess.PIPE,
        process_group=0,
    ) as stubborn:
        assert stubborn.stdout is not None
        assert stubborn.stdout.readline() == b"started\n"

        code = run_stack._stop({"gateway": stubborn})

    assert code == -signal.SIGKILL
    assert _group_gone(stubborn.pid)


def _group_gone(group: int) -> bool:
    """Whether no process is left in `group` (waiting for init to reap an orphan, up to 10 s)."""
    for _ in range(100):
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False
