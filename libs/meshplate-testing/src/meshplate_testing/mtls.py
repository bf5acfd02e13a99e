"""A test's channel to a server on this machine, over mutual TLS as some workload, and the
callers' tables a service's own tests serve with."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from meshplate_core.callers import Callers, granted
from meshplate_core.mtls import Tls


def channel_to(
    port: int,
    *,
    caller: Tls,
    server: str,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A plain channel (no retries, no balancing) to 127.0.0.1:`port`, presenting `caller`'s
    certificate and checking that the server is workload `server`."""
    return grpc.aio.secure_channel(
        f"127.0.0.1:{port}",
        caller.channel_credentials(),
        options=[("grpc.ssl_target_name_override", server)],
        interceptors=interceptors,
    )


def open_to(caller: str, tables: Sequence[Callers]) -> list[Callers]:
    """`tables` with every RPC granted to workload `caller`: a service's own tests call all of
    its RPCs as one test client (which caller may call what is the e2e tests' to check)."""
    return granted(tables, {caller: [name for table in tables for name in table.table]})
