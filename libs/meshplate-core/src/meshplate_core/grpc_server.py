"""The grpc.aio server bootstrap: interceptors, health, reflection, signals and graceful stop.

`start` is what tests use (a real server on port 0); `serve_until_terminated` is what a service's
`serve()` awaits: it keeps the health status in step with the service's own check (its database),
and on SIGTERM reports NOT_SERVING first, then gives in-flight RPCs a grace period to finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from meshplate_core.callers import Callers
from meshplate_core.channels import KEEPALIVE_S, LIVENESS
from meshplate_core.interceptors import RpcInterceptor
from meshplate_core.metrics import RpcMetrics
from meshplate_core.mtls import Tls

log = logging.getLogger(__name__)

Register = Callable[[grpc.aio.Server], None]
Check = Callable[[], Awaitable[None]]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class _Wrapping(grpc.aio.Server):
    """The server as services register on it: each method handler wrapped once by the
    interceptor as it is registered. Generated code registers a service twice, as registered
    method handlers (which gRPC uses for those methods) and as a generic handler (the
    fallback, and all a hand-made service has): both are wrapped."""

    def __init__(self, server: grpc.aio.Server, interceptor: RpcInterceptor) -> None:
        self._server = server
        self._interceptor = interceptor

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        wrapped = self._interceptor.wrap(service_name, method_handlers)
        self._server.add_registered_method_handlers(service_name, wrapped)

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]
    ) -> None:
        self._server.add_generic_rpc_handlers(
            [_WrappedGeneric(handler, self._interceptor) for handler in generic_rpc_handlers]
        )

    def add_insecure_port(self, address: str) -> int:
        raise NotImplementedError("register services only")

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        raise NotImplementedError("register services only")

    async def start(self) -> None:
        raise NotImplementedError("register services only")

    async def stop(self, grace: float | None) -> None:
        raise NotImplementedError("register services only")

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 (the base signature)
        raise NotImplementedError("register services only")


class _WrappedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose method handlers are wrapped once, the first time each is asked
    for (methods it does not know are not remembered: made-up names must not grow the table)."""

    def __init__(self, inner: grpc.GenericRpcHandler, interceptor: RpcInterceptor) -> None:
        self._inner = inner
        self._interceptor = interceptor
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        if (known := self._handlers.get(method)) is not None:
            return known
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        service, _, name = method.lstrip("/").partition("/")
        self._handlers[method] = self._interceptor.wrap(service, {name: handler})[name]
        return self._handlers[method]


@dataclass(frozen=True)
class Running:
    """A started server, its real port (also when asked for 0) and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    service_name: str

    async def set_serving(self, serving: bool) -> None:
        """Report the service (and the server as a whole, "") as serving or not."""
        status = SERVING if serving else NOT_SERVING
        for name in (self.service_name, ""):
            await self.health.set(name, status)


async def start(
    register: Register,
    *,
    service_name: str,
    host: str = "127.0.0.1",
    port: int = 0,
    max_connection_age_s: float = 300.0,
    min_ping_interval_s: float = KEEPALIVE_S / 2,
    serving: bool = True,
    metrics: RpcMetrics | None = None,
    tls: Tls | None = None,
    callers: Iterable[Callers] = (),
) -> Running:
    """Start a server with the Meshplate interceptors, health and reflection (and every RPC
    counted in `metrics`, when given), accepting a client's ping every `min_ping_interval_s`
    seconds, with or without calls in flight.

    With `tls`, the port takes mutual TLS only and each call is checked against `callers`;
    without, it is plaintext and nobody's identity is known, so `callers` cannot apply."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_connection_age_ms", int(max_connection_age_s * 1000)),
            ("grpc.max_connection_age_grace_ms", 30_000),
            # Let clients' keepalive pings through (meshplate_core.channels pings every
            # KEEPALIVE_S). Closer pings are strikes, and the third one closes the connection
            # with GOAWAY "too_many_pings" (C-core's default interval is 5 minutes).
            ("grpc.http2.min_ping_interval_without_data_ms", int(min_ping_interval_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
        ],
    )
    wrapping = _Wrapping(server, RpcInterceptor(metrics, callers if tls is not None else ()))
    register(wrapping)
    checks = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checks, wrapping)
    reflection.enable_server_reflection(
        (service_name, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{host}:{port}"
    bound = (
        server.add_secure_port(address, tls.server_credentials())
        if tls is not None
        else server.add_insecure_port(address)
    )
    await server.start()
    running = Running(server, bound, checks, service_name)
    await checks.set(LIVENESS, SERVING)
    await running.set_serving(serving)
    return running


async def watch_health(running: Running, check: Check, *, interval_s: float) -> None:
    """Forever: run the check, report SERVING when it passes and NOT_SERVING when it raises."""
    healthy: bool | None = None
    while True:
        try:
            await check()
            now_healthy = True
        except Exception as exc:
            now_healthy = False
            if healthy is not False:
                log.warning("health check failed: %s", exc.__class__.__name__, exc_info=True)
        if now_healthy != healthy:
            await running.set_serving(now_healthy)
            if now_healthy:
                log.info("health check passed, serving")
            healthy = now_healthy
        await asyncio.sleep(interval_s)


async def serve_until_terminated(
    register: Register,
    *,
    service_name: str,
    host: str,
    port: int,
    grace_s: float,
    max_connection_age_s: float,
    check: Check,
    check_interval_s: float,
    drain_s: float = 0.0,
    metrics: RpcMetrics | None = None,
    tls: Tls | None = None,
    callers: Iterable[Callers] = (),
) -> None:
    """Serve until SIGTERM or SIGINT, then report NOT_SERVING and stop within `grace_s`.

    Between the two, `drain_s` lets load balancers see NOT_SERVING while new calls still succeed.
    """
    running = await start(
        register,
        service_name=service_name,
        host=host,
        port=port,
        max_connection_age_s=max_connection_age_s,
        serving=False,
        metrics=metrics,
        tls=tls,
        callers=callers,
    )
    if tls is None:
        log.warning(
            "%s listening on %s:%d in plaintext (GRPC_PLAINTEXT): callers are neither "
            "authenticated nor checked",
            service_name,
            host,
            running.port,
        )
    else:
        log.info("%s listening on %s:%d (mutual TLS)", service_name, host, running.port)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    watcher = asyncio.create_task(watch_health(running, check, interval_s=check_interval_s))
    try:
        await stopping.wait()
    finally:
        log.info("stopping: NOT_SERVING, then up to %.1f s for in-flight RPCs", grace_s)
        watcher.cancel()
        await running.health.enter_graceful_shutdown()
        await asyncio.sleep(drain_s)
        await running.server.stop(grace_s)
        log.info("stopped")
