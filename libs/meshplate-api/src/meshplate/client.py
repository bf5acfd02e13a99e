"""Calling Meshplate's gRPC services from another service (the hand-written part of this package).

    from meshplate.client import Workload, metadata
    from meshplate.users.v1 import users_pb2, users_pb2_grpc

    me = Workload.from_folder("/var/run/meshplate/tls")  # ca.crt, tls.crt, tls.key
    async with me.channel("dns:///users.meshplate:50052", "users") as channel:
        users = users_pb2_grpc.UsersServiceStub(channel)
        reply = await users.GetUser(users_pb2.GetUserRequest(username="ann"), timeout=2)

Every call is mutual TLS: your workload shows a certificate of Meshplate's CA whose URI SAN is
its SPIFFE ID (`spiffe://meshplate/<your name>`), and checks that the server it reached is the
workload it meant (`users` above). The called service refuses a workload its table of callers
does not name (PERMISSION_DENIED): the operator grants your name the RPCs you need
(`USERS_GRANTS='{"billing": ["GetUser"]}'`). A write made for an end user carries that user's
access token (`metadata=metadata(token=...)`, with your request's id too when you have one), and
the service acts as that user.

The channel balances over every address of the target (round robin over the replicas that
report `meshplate.liveness` serving), pings idle connections, and retries on UNAVAILABLE the RPCs
the contract marks idempotent (never the others); pass a deadline (`timeout=`) on every call.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.descriptor_pb2 import MethodOptions

from meshplate.auth.v1 import auth_pb2
from meshplate.ratelimit.v1 import ratelimit_pb2
from meshplate.users.v1 import users_pb2

# The health entry every Meshplate server reports SERVING from its start until it begins to
# stop: what clients watch on each replica, to balance over those that take calls.
LIVENESS = "meshplate.liveness"
# How often an idle channel pings its server (servers accept pings twice as often).
KEEPALIVE_S = 20.0
# The metadata that forwards an end user's access token (`Bearer <token>`), and the request id.
AUTHORIZATION = "authorization"
REQUEST_ID = "x-request-id"
# Each service by the workload name its certificate carries.
SERVICES: dict[str, ServiceDescriptor] = {
    "auth": auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    "users": users_pb2.DESCRIPTOR.services_by_name["UsersService"],
    "ratelimit": ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimitService"],
}
_RETRYABLE_LEVELS = (MethodOptions.NO_SIDE_EFFECTS, MethodOptions.IDEMPOTENT)
# How far above the calls' deadline a channel's default deadline lies (see `service_config`).
_BACKSTOP_S = 5.0


def is_idempotent(method: MethodDescriptor) -> bool:
    """Whether the contract allows calling this RPC more than once for one request."""
    return method.GetOptions().idempotency_level in _RETRYABLE_LEVELS


def service_config(
    services: Sequence[ServiceDescriptor], *, timeout_s: float, max_attempts: int = 3
) -> dict[str, Any]:
    """A gRPC service config: round robin over the replicas that report LIVENESS serving
    (gRPC's client-side health checking: a replica that begins to stop is left at once, while
    its drain lets calls already sent finish), a default deadline, retries for idempotent RPCs.

    The default deadline is a backstop for a call that sets none, `_BACKSTOP_S` above
    `timeout_s`: gRPC Python ends calls about 1.8 s before a service config's timeout (a 3 s one
    ended calls after 1.2 s, and one under 2 s failed them at once; grpc/grpc#34547), while the
    `timeout` a call passes is kept exactly."""
    timeout = f"{timeout_s + _BACKSTOP_S:.3f}s"
    retryable = [
        {"service": service.full_name, "method": method.name}
        for service in services
        for method in service.methods
        if is_idempotent(method)
    ]
    method_config: list[dict[str, Any]] = [
        {"name": [{"service": service.full_name} for service in services], "timeout": timeout}
    ]
    if retryable:
        method_config.append(
            {
                "name": retryable,
                "timeout": timeout,
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        )
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": LIVENESS},
        "methodConfig": method_config,
        # Retries stop when more than half of recent calls failed, so an outage is not multiplied.
        "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
    }


def channel_options(
    services: Sequence[ServiceDescriptor],
    *,
    timeout_s: float,
    keepalive_s: float = KEEPALIVE_S,
    server: str | None = None,
) -> list[tuple[str, Any]]:
    """The options of a channel to `services`; with `server`, the workload name the server's
    certificate must carry (whatever host the target names)."""
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(service_config(services, timeout_s=timeout_s))),
        ("grpc.enable_retries", 1),
        ("grpc.keepalive_time_ms", int(keepalive_s * 1000)),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Keep pinging an idle connection: by default C-core sends two pings without data,
        # then waits a minute or more between pings, so a dead peer of an idle channel would
        # be found minutes late.
        ("grpc.http2.max_pings_without_data", 0),
        # A restarted peer is found again within about a second, not after minutes of backoff.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 1_000),
    ]
    if server is not None:
        options.append(("grpc.ssl_target_name_override", server))
    return options


@dataclass(frozen=True)
class Workload:
    """Your workload's trust anchor, certificate and key, in PEM."""

    ca: bytes
    certificate: bytes
    key: bytes

    @classmethod
    def from_folder(cls, folder: str | Path) -> Workload:
        """The files of a Kubernetes TLS secret (`ca.crt`, `tls.crt`, `tls.key`) in `folder`."""
        path = Path(folder)
        return cls(
            ca=(path / "ca.crt").read_bytes(),
            certificate=(path / "tls.crt").read_bytes(),
            key=(path / "tls.key").read_bytes(),
        )

    def credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials presenting this workload's certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.certificate
        )

    def channel(self, target: str, server: str, *, timeout_s: float = 5.0) -> grpc.aio.Channel:
        """A channel to Meshplate service `server` (`auth`, `users` or `ratelimit`) at `target`
        (`host:port`, or `dns:///name:port` for every replica); `timeout_s` is the deadline
        your calls pass (the channel's default deadline is a backstop above it)."""
        if server not in SERVICES:
            raise ValueError(f"no Meshplate service named {server!r}: one of {', '.join(SERVICES)}")
        options = channel_options([SERVICES[server]], timeout_s=timeout_s, server=server)
        return grpc.aio.secure_channel(target, self.credentials(), options=options)


def metadata(
    *, request_id: str | None = None, token: str | None = None
) -> tuple[tuple[str, str], ...]:
    """Call metadata: your request's id (1 to 128 of letters, digits and `. _ : -`; the services
    log under it and pass it on), and, for a write made for an end user, that user's access
    token (the service acts as that user)."""
    return (
        *(((REQUEST_ID, request_id),) if request_id else ()),
        *(((AUTHORIZATION, f"Bearer {token}"),) if token else ()),
    )
