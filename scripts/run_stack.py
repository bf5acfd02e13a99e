"""`make run`: the whole local stack in the foreground, stopped together by Ctrl-C or SIGTERM.

Migrates the databases of auth, users and ratelimit first (one-shot `python -m <svc> migrate`
processes, as a cluster's Jobs), then starts auth, users, ratelimit, worker and gateway as child
processes on the ports of their settings
(docs/design.md's defaults, or the environment and `.env`), Envoy in front of the gateway as the entry
point (deploy/envoy/envoy.yaml with local addresses; EDGE_HOST, EDGE_PORT 8080, EDGE_ADMIN_PORT
9901, EDGE_STATS_PORT 9902 for its metrics; EDGE_LIMIT requests per EDGE_LIMIT_PERIOD_S seconds
per client address instead of the file's 600 a minute, when set), and, unless WORKER_SMTP_HOST names another host, a local SMTP server that prints the mail it
gets; their output is prefixed by name. Every gRPC hop is mutual TLS with certificates of a local
CA made under `var/tls` on first start (LOCAL_TLS_ROOT moves it; GRPC_PLAINTEXT=true turns TLS
off for a run). Waits until /health/ready answers 200 through Envoy and
prints where everything is. A child that exits
is reported and the rest keep running, so a service can be stopped and started by hand. Started
from a terminal, the runner takes the terminal's Ctrl-C for itself (`_own_terminal`), so that
`make run` ends with the runner's exit code: 0 after a clean stop.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import redis

from auth.settings import Settings as AuthSettings
from gateway.settings import Settings as GatewaySettings
from meshplate_core.pki import ensure
from meshplate_testing.edge import envoy_command, local_config, write_config
from ratelimit.settings import Settings as RateLimitSettings
from users.settings import Settings as UsersSettings
from worker.settings import Settings as WorkerSettings

SERVICES = ("auth", "users", "ratelimit", "worker", "gateway")
ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# The order of a stop: the edge, then the callers, then what they call. A gateway process still
# starting when the stop comes waits for auth's keys before it can exit: auth must still answer.
STOP_ORDER = (("envoy",), ("gateway", "worker"), ("auth", "users", "ratelimit", "mail"))
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# What one process gets beside the common environment, as its image sets it. users: its big
# blocks (a password hash's 7 MiB) in transparent huge pages where the kernel leaves them to
# madvise, so a hash costs a few page faults instead of about 1,800 (a quarter of its CPU per
# login); the other services keep 4 KiB pages (huge ones would round their heaps up).
OWN_ENVIRONMENT = {"users": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}}


def _environment() -> dict[str, str]:
    env = {
        "ENVIRONMENT": "local",
        "LOG_JSON": "false",
        # Envoy, on this machine, sets X-Forwarded-For.
        "GATEWAY_TRUSTED_PROXIES": '["127.0.0.1/32"]',
        # One gateway process per core, as a monolith runs one worker per core.
        "GATEWAY_WORKERS": str(os.cpu_count() or 1),
        # glibc's allocator, as in the images: at most two arenas (threads' freed memory was kept
        # in arenas of their own) and blocks of 1 MiB and more always given back (each password
        # hash's 9 MiB otherwise stayed): the users service held 143 MiB after logins, now 106.
        "MALLOC_ARENA_MAX": "2",
        "MALLOC_MMAP_THRESHOLD_": "1048576",
        **os.environ,
        "PYTHONUNBUFFERED": "1",
    }
    # Every caller finds each service where that service's own settings put it.
    callers = {"AUTH": ("GATEWAY", "WORKER", "USERS"), "USERS": ("GATEWAY", "WORKER", "AUTH")}
    for name, settings in (
        ("AUTH", AuthSettings()),
        ("USERS", UsersSettings()),
        ("RATELIMIT", RateLimitSettings()),
    ):
        address = f"{settings.grpc_host}:{settings.grpc_port}"
        for caller in callers.get(name, ("GATEWAY",)):
            env.setdefault(f"{caller}_{name}_ADDR", address)
    return env


def _identities(env: dict[str, str], names: list[str]) -> dict[str, Path]:
    """Each workload's TLS folder, from a local CA under `var/tls` (LOCAL_TLS_ROOT) made on
    first start (meshplate_core.pki)."""
    folders = ensure(Path(env.get("LOCAL_TLS_ROOT", "var/tls")), names)
    return {name: folder.resolve() for name, folder in folders.items()}


def _migrate(env: dict[str, str]) -> dict[str, str]:
    """Each database service's migrations (and start-up data) as a one-shot process, all at
    once, before anything serves, as a cluster's migration Jobs run them (those whose settings
    say `MIGRATE_ON_START`): the services then start without Alembic (about 12 MiB less each).
    The settings that tell them so; a failed migration's output is printed and RuntimeError
    raised."""
    settings = {"auth": AuthSettings(), "users": UsersSettings(), "ratelimit": RateLimitSettings()}
    names = [name for name, each in settings.items() if each.migrate_on_start]
    runs = {
        name: subprocess.Popen(
            [sys.executable, "-m", name, "migrate"],
            env={**OWN_ENVIRONMENT.get(name, {}), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        for name in names
    }
    failed = []
    for name, run in runs.items():
        output, _ = run.communicate(timeout=READY_TIMEOUT_S)
        if run.returncode != 0:
            failed.append(
                f"run: {name} migrate exited with {run.returncode}:\n{output.decode(errors='replace')}"
            )
    if failed:
        raise RuntimeError("\n".join(failed))
    return {f"{name.upper()}_MIGRATE_ON_START": "false" for name in names}


def _edge_limit(env: dict[str, str]) -> tuple[int, int] | None:
    if "EDGE_LIMIT" not in env:
        return None
    return int(env["EDGE_LIMIT"]), int(env.get("EDGE_LIMIT_PERIOD_S", "60"))


def _relay(name: str, stream: IO[bytes]) -> None:
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{name:<9} | {line.decode(errors='replace')}")
        sys.stdout.flush()


def _start(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A process group of its own: Ctrl-C in the terminal reaches the runner only, which stops
    # every child in order with SIGTERM (a child interrupted twice, by the terminal's SIGINT and
    # then the runner's SIGTERM, could die of the second in the middle of its shutdown).
    child = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0
    )
    assert child.stdout is not None
    threading.Thread(target=_relay, args=(name, child.stdout), daemon=True).start()
    return child


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False


def _stop(children: dict[str, subprocess.Popen[bytes]]) -> int:
    """SIGTERM to each child, callers before what they call (`STOP_ORDER`), each group once the
    one before has exited; whatever is left at `STOP_TIMEOUT_S` is killed, with its process
    group. The exit code is 0
    when every child stopped cleanly."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    worst = 0
    unordered = tuple(set(children) - {name for group in STOP_ORDER for name in group})
    for group in (*STOP_ORDER, unordered):
        stopping = {name: children[name] for name in group if name in children}
        for child in stopping.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for name, child in stopping.items():
            try:
                code = child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"run: {name} did not stop in {STOP_TIMEOUT_S:.0f} s, killing it")  # noqa: T201
                # Its whole process group (`_start`): a gateway's worker processes too.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                code = child.wait()
            if code != 0:
                print(f"run: {name} stopped with code {code}", flush=True)  # noqa: T201
            worst = worst or code
    return worst


def main() -> int:
    """Run the stack until a signal; the exit code is 0 when every child stopped cleanly."""
    env = _environment()
    gateway, worker, ratelimit = GatewaySettings(), WorkerSettings(), RateLimitSettings()
    if not _redis_answers(env.get("REDIS_URL", gateway.redis_url)):
        return 1
    try:
        env |= _migrate(env)
    except RuntimeError as exc:
        print(exc, flush=True)  # noqa: T201
        return 1
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    identities = _identities(env, [*SERVICES, "envoy"])
    edge = f"http://{env.get('EDGE_HOST', '127.0.0.1')}:{env.get('EDGE_PORT', '8080')}"
    edge_config = _edge_config(env, gateway, ratelimit, identities["envoy"])
    commands = {
        **{name: [sys.executable, "-m", name] for name in SERVICES},
        **_mail_sink(worker),
        "envoy": envoy_command(edge_config),
    }
    try:
        children = {
            name: _start(
                name,
                argv,
                {
                    **OWN_ENVIRONMENT.get(name, {}),
                    **env,
                    # Its certificate (unused when GRPC_PLAINTEXT=true: plaintext wins).
                    **({"TLS_DIR": str(identities[name])} if name in SERVICES else {}),
                },
            )
            for name, argv in commands.items()
        }
        if not _ready_in_time(edge, stopping):
            _stop(children)
            return 1
        if not stopping.is_set():
            print(_banner(edge, gateway, worker, mail="mail" in commands), flush=True)  # noqa: T201
        _watch(children, stopping)
        print("run: stopping every service", flush=True)  # noqa: T201
        return _stop(children)
    finally:
        # The edge's config was written for this run only.
        shutil.rmtree(edge_config.parent, ignore_errors=True)


def _redis_answers(url: str) -> bool:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError:
        print(f"run: no Redis answers at {url}: start one (redis-server) or set REDIS_URL")  # noqa: T201
        return False
    return True


def _edge_config(
    env: dict[str, str], gateway: GatewaySettings, ratelimit: RateLimitSettings, tls: Path
) -> Path:
    """Envoy's configuration for this run, in a folder of its own."""
    return write_config(
        local_config(
            ROOT / "deploy" / "envoy" / "envoy.yaml",
            listen=(env.get("EDGE_HOST", "127.0.0.1"), int(env.get("EDGE_PORT", "8080"))),
            admin=("127.0.0.1", int(env.get("EDGE_ADMIN_PORT", "9901"))),
            stats=("127.0.0.1", int(env.get("EDGE_STATS_PORT", "9902"))),
            gateways=[(gateway.host, gateway.port)],
            ratelimit=[(ratelimit.grpc_host, ratelimit.grpc_port)],
            tls=tls,
            edge_limit=_edge_limit(env),
        )
    )


def _mail_sink(worker: WorkerSettings) -> dict[str, list[str]]:
    """A local SMTP server that prints every message, so the welcome e-mails can be read (when
    the worker's relay is on this machine)."""
    if worker.smtp_host not in LOCAL_HOSTS:
        return {}
    sink = str(Path(__file__).with_name("mail_sink.py"))
    return {"mail": [sys.executable, sink, worker.smtp_host, str(worker.smtp_port)]}


def _ready_in_time(edge: str, stopping: threading.Event) -> bool:
    """Whether /health/ready answered 200 through Envoy (or a stop came) in time."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not stopping.is_set() and not _ready(f"{edge}/health/ready"):
        if time.monotonic() > deadline:
            print(f"run: {edge}/health/ready not 200 after {READY_TIMEOUT_S:.0f} s")  # noqa: T201
            return False
        time.sleep(0.2)
    return True


def _banner(edge: str, gateway: GatewaySettings, worker: WorkerSettings, *, mail: bool) -> str:
    return (
        f"\nMeshplate is up, behind Envoy at {edge}: REST API {edge}/api/v1  docs {edge}/docs  "
        f"readiness {edge}/health/ready\n(the gateway itself: "
        f"http://{gateway.host}:{gateway.port}; worker http://{worker.http_host}:"
        f"{worker.http_port}/health)"
        + (f"  e-mails printed by 'mail' ({worker.smtp_host}:{worker.smtp_port})" if mail else "")
        + "\nCtrl-C stops everything.\n"
    )


def _watch(children: dict[str, subprocess.Popen[bytes]], stopping: threading.Event) -> None:
    """Until a stop: report each child that exits (the others keep running)."""
    reported: set[str] = set()
    while not stopping.wait(0.5):
        for name, child in children.items():
            if child.poll() is not None and name not in reported:
                reported.add(name)
                print(f"run: {name} exited with code {child.returncode}", flush=True)  # noqa: T201


@contextlib.contextmanager
def _own_terminal() -> Iterator[None]:
    """While it runs, the runner alone gets the terminal's Ctrl-C. A terminal signals its whole
    foreground process group: make and uv with the runner. GNU make, interrupted, waits for its
    recipe and then dies of the signal itself (`make: *** [run] Interrupt`, status 130), however
    cleanly the stack stopped. So, as a shell does for a job, the runner moves to a process group
    of its own, makes it the terminal's foreground one, and gives the terminal back when it
    ends; make then exits with the runner's code. Without a terminal, or when not in its
    foreground (a test's runner), nothing changes."""
    try:
        fd = sys.stdin.fileno()
        # In the terminal's foreground group, and not its leader (make is, or the shell's job).
        foreground = os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp() != os.getpid()
    except (OSError, ValueError):
        foreground = False
    if not foreground:
        yield
        return
    previous = os.getpgrp()
    # A process that sets the terminal's foreground group from outside it is stopped with
    # SIGTTOU unless it ignores that signal.
    ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.setpgid(0, 0)
        os.tcsetpgrp(fd, os.getpgrp())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(fd, previous)
        signal.signal(signal.SIGTTOU, ttou)


if __name__ == "__main__":
    with _own_terminal():
        code = main()
    sys.exit(code)
