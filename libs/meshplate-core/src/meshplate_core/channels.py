"""How the services call each other: the channel factory (the channel policy of the published
client, meshplate.client: keepalive, a backstop deadline, retries of the RPCs the contract marks
idempotent, round robin over healthy replicas; mutual TLS with a renewing certificate), the
metadata every call carries, and `Caller`, through which every client module makes its calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

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

Request = TypeVar("Request")
Reply = TypeVar("Reply")

__all__ = [
    "AUTHORIZATION",
    "KEEPALIVE_S",
    "LIVENESS",
    "Caller",
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


class Caller:
    """The one way a client module calls a service: every call with the client's deadline and
    `call_metadata` (the request id, the trace context, and the end user's token when the call
    is made for one). Retries are the channel's (`open_channel`): on UNAVAILABLE, for the RPCs
    the contract marks idempotent, never for the others; so a call made here is retried exactly
    when its RPC may be applied twice.

        reply = await self._call(self._stub.GetUser, request)
        await self._call(self._stub.UpdateUser, request, user=claims)
    """

    def __init__(self, *, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    async def __call__(
        self,
        rpc: grpc.aio.UnaryUnaryMultiCallable[Request, Reply],
        request: Request,
        *,
        user: Claims | None = None,
        within_s: float | None = None,
    ) -> Reply:
        """`rpc`'s reply to `request`, made as `user` when given; with `within_s` (the time a
        caller of ours has left), the deadline is whichever of the two ends first."""
        timeout = self.timeout_s if within_s is None else min(self.timeout_s, within_s)
        return await rpc(request, timeout=timeout, metadata=call_metadata(user))
