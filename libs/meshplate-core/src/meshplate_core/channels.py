"""The client channel factory: keepalive, deadlines, retries of idempotent calls, round robin.

Which calls may be retried is read from the contract itself: an RPC whose proto declares
`idempotency_level = NO_SIDE_EFFECTS` or `IDEMPOTENT` is retried on UNAVAILABLE, any other is not,
because a retried write could be applied twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.descriptor_pb2 import MethodOptions

from meshplate_core.interceptors import REQUEST_ID_KEY
from meshplate_core.logging import request_id
from meshplate_core.mtls import Tls
from meshplate_core.renewal import RenewingChannel
from meshplate_core.tracing import inject

if TYPE_CHECKING:
    # Only its type: the processes without the jwt extra (ratelimit, the worker) open channels too.
    from meshplate_core.tokens import Claims

_RETRYABLE_LEVELS = (MethodOptions.NO_SIDE_EFFECTS, MethodOptions.IDEMPOTENT)
# How far above a channel's `timeout_s` its default deadline lies (see `service_config`).
_BACKSTOP_S = 5.0
# How often an idle channel pings its server to learn that the connection still works; servers
# (meshplate_core.grpc_server) accept pings twice as often, so none counts as abuse.
KEEPALIVE_S = 20.0
# The health entry a server reports SERVING from its start until it begins to stop, whatever its
# database says (meshplate_core.grpc_server): what liveness probes ask, and what clients watch on
# each replica to balance only over those that take calls (a database outage must make pods
# unready, not restart them, nor empty a client's rotation).
LIVENESS = "meshplate.liveness"
# The metadata that forwards the end user's access token (`Bearer <token>`) with a call.
AUTHORIZATION = "authorization"


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
    `timeout` a call passes is kept exactly, and our clients pass `timeout_s` on every call."""
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


def open_channel(
    target: str,
    *,
    services: Sequence[ServiceDescriptor],
    timeout_s: float,
    tls: Tls | None,
    server: str,
    keepalive_s: float = KEEPALIVE_S,
) -> grpc.aio.Channel:
    """A channel to workload `server` at `target` (`host:port`, or `dns:///name:port` for every
    replica), pinging it every `keepalive_s` seconds: mutual TLS with this process's
    certificate (a renewed one picked up: meshplate_core.renewal), the server checked by its name
    (not by `target`'s host), or plaintext when `tls` is None."""
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
    if tls is None:
        return grpc.aio.insecure_channel(target, options=options)
    options.append(("grpc.ssl_target_name_override", server))
    return RenewingChannel(
        lambda: grpc.aio.secure_channel(target, tls.channel_credentials(), options=options), tls
    )


def call_metadata(user: Claims | None = None) -> tuple[tuple[str, str], ...]:
    """Metadata every outgoing call carries: the request id of the request being served, and
    the trace context; with `user`, that end user's access token, for a write the called
    service makes as that user."""
    carrier: dict[str, str] = {}
    inject(carrier)
    rid = request_id.get()
    return (
        *(((REQUEST_ID_KEY, rid),) if rid else ()),
        *carrier.items(),
        *(((AUTHORIZATION, f"Bearer {user.token}"),) if user is not None else ()),
    )
