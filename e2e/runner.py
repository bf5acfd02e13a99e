"""`make run`'s runner (scripts/run_stack.py) as a child process, on free ports: for the test of
the runner itself and for the benchmarks of the whole stack as separate processes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port

RUNNER = str(Path(__file__).parents[1] / "scripts" / "run_stack.py")
# Every port the runner opens, by name (the gRPC services' /metrics ports apart).
PORTS = (
    "auth",
    "users",
    "ratelimit",
    "gateway",
    "worker",
    "mail",
    "edge",
    "edge-admin",
    "edge-stats",
)
# The gRPC services' own /metrics ports (the gateway and the worker serve it on theirs).
METRICS = ("auth", "users", "ratelimit")


@dataclass(frozen=True)
class Runner:
    """The runner's process, where each of its servers listens, and the environment it was given
    (on top of this process's: another process of the stack can be started alike)."""

    process: ServiceProcess
    ports: dict[str, int]
    metrics: dict[str, int]
    env: dict[str, str] = field(default_factory=dict)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"


def runner(redis_url: str, **env: str) -> Runner:
    """A runner (not started yet) on free ports and `redis_url`, with `env` on top."""
    ports = {name: free_port() for name in PORTS}
    metrics = {name: free_port() for name in METRICS}
    environment = {
        "REDIS_URL": redis_url,
        "AUTH_GRPC_PORT": str(ports["auth"]),
        "USERS_GRPC_PORT": str(ports["users"]),
        "RATELIMIT_GRPC_PORT": str(ports["ratelimit"]),
        "GATEWAY_PORT": str(ports["gateway"]),
        "WORKER_HTTP_PORT": str(ports["worker"]),
        "WORKER_SMTP_PORT": str(ports["mail"]),
        "EDGE_PORT": str(ports["edge"]),
        "EDGE_ADMIN_PORT": str(ports["edge-admin"]),
        "EDGE_STATS_PORT": str(ports["edge-stats"]),
        **{f"{name.upper()}_METRICS_PORT": str(port) for name, port in metrics.items()},
        **env,
    }
    process = ServiceProcess(RUNNER, env=environment, script=True)
    return Runner(process=process, ports=ports, metrics=metrics, env=environment)
