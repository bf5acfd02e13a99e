"""A health probe for container health checks (slim images have no curl or grpc_health_probe):

    python -m meshplate_core.probe grpc 127.0.0.1:50051 meshplate.auth.v1.AuthService
    python -m meshplate_core.probe http http://127.0.0.1:8000/health
    python -m meshplate_core.probe http https://127.0.0.1:8000/health   (GATEWAY_HTTPS)
    python -m meshplate_core.probe web 127.0.0.1:8000/health            (either: the images')

Exit code 0 when the target answers SERVING / 200 within two seconds, 1 otherwise. gRPC probes
speak mutual TLS with the certificate of the workload's own settings (TLS_DIR, as the service
itself reads it; plaintext only with GRPC_PLAINTEXT): Kubernetes' native gRPC probe cannot, so
the gRPC services' pods run this as an exec probe, and so does a gateway serving HTTPS with
mutual TLS (its probe shows the workload's own certificate). `web` serves an image whose
HEALTHCHECK cannot know whether the gateway serves HTTPS: over HTTPS when the workload has a
certificate and the server speaks it, else over HTTP.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshplate_core.mtls import Tls
from meshplate_core.settings import ServiceSettings

TIMEOUT_S = 2.0


def grpc_serving(target: str, service: str, tls: Tls | None = None) -> bool:
    """Whether the standard health service at `target` says `service` is SERVING (over mutual
    TLS with `tls`: every workload's certificate names `localhost`, which is what is checked)."""
    with _channel(target, tls) as channel:
        try:
            # The stubs' types describe the asynchronous flavour only.
            stub: Any = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT_S)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _channel(target: str, tls: Tls | None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(
        target,
        tls.channel_credentials(),
        options=[("grpc.ssl_target_name_override", "localhost")],
    )


def http_ok(url: str, tls: Tls | None = None) -> bool:
    """Whether GET `url` answers 200 (an `https://` one with `tls`'s certificate shown)."""
    context = tls.http_client_context() if tls is not None and url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def web_ok(address_and_path: str, tls: Tls | None) -> bool:
    """Whether `address_and_path` answers 200 over HTTPS (with `tls`), or else over HTTP: a
    server that speaks only one of them refuses the other at once."""
    if tls is not None and http_ok(f"https://{address_and_path}", tls):
        return True
    return http_ok(f"http://{address_and_path}")


def main(argv: list[str]) -> int:
    """The exit code for `argv` (see the module docstring)."""
    grpc_probe = len(argv) == 3 and argv[0] == "grpc"
    http_probe = len(argv) == 2 and argv[0] == "http"
    web_probe = len(argv) == 2 and argv[0] == "web"
    if not (grpc_probe or http_probe or web_probe):
        print(__doc__, file=sys.stderr)  # noqa: T201
        return 2
    tls = None
    if grpc_probe or argv[1].startswith("https:") or web_probe:
        try:
            # The workload's own certificate, as the service itself reads it.
            tls = ServiceSettings().tls()
        except ValueError as exc:
            if not web_probe:
                print(exc, file=sys.stderr)  # noqa: T201
                return 1
    if grpc_probe:
        return 0 if grpc_serving(argv[1], argv[2], tls) else 1
    if web_probe:
        return 0 if web_ok(argv[1], tls) else 1
    return 0 if http_ok(argv[1], tls) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
