"""The client channel factory of the services: the channel policy of the published client
(meshplate.client: keepalive, a backstop deadline, retries of the RPCs the contract marks
idempotent, round robin over healthy replicas), mutual TLS with a renewing certificate, and the
metadata every call carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from meshplate.client import (
    AUTHORIZATION,
    KEEPALIVE_S,
    LIVENESS,
    channel_options,
    is_idempotent,
    service_config,
)
from meshplate_core.interceptors import REQUEST_ID_KEY
from meshplate_core.logging import request_id
from meshplate_core.mtls import Tls
from meshplate_core.renewal import RenewingChannel
from meshplate_core.tracing import inject

if TYPE_CHECKING:
    # Only its type: the processes without the jwt extra (ratelimit, the worker) open channels too.
    from meshplate_core.tokens import Claims

__all__ = [
    "AUTHORIZATION",
    "KEEPALIVE_S",
    "LIVENESS",
    "call_metadata",
    "is_idempotent",
    "open_channel",
    "service_config",
]


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
    if tls is None:
        options = channel_options(services, timeout_s=timeout_s, keepalive_s=keepalive_s)
        return grpc.aio.insecure_channel(target, options=options)
    options = channel_options(services, timeout_s=timeout_s, keepalive_s=keepalive_s, server=server)
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
