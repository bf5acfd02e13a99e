"""A health probe for container health checks (slim images have no curl or grpc_health_probe):

    python -m meshplate_core.probe grpc 127.0.0.1:50051 meshplate.auth.v1.AuthService
    python -m meshplate_core.probe http http://127.0.0.1:8000/health

Exit code 0 when the target answers SERVING / 200 within two seconds, 1 otherwise. Kubernetes
uses its native gRPC and HTTP probes instead.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_S = 2.0


def grpc_serving(target: str, service: str) -> bool:
    """Whether the standard health service at `target` says `service` is SERVING."""
    with grpc.insecure_channel(target) as channel:
        try:
            # The stubs' types describe the asynchronous flavour only.
            stub: Any = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def http_ok(url: str) -> bool:
    """Whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str]) -> int:
    """The exit code for `argv` (see the module docstring)."""
    if len(argv) == 3 and argv[0] == "grpc":
        return 0 if grpc_serving(argv[1], argv[2]) else 1
    if len(argv) == 2 and argv[0] == "http":
        return 0 if http_ok(argv[1]) else 1
    print(__doc__, file=sys.stderr)  # noqa: T201
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
