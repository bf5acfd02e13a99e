"""The server interceptor: the request id into the log context, the caller's trace continued,
domain errors into status codes, every RPC counted and timed.

One interceptor does all four, and wraps each method's handler once, when the service registers
it (meshplate_core.grpc_server), not once per call: four stacked Python interceptors cost about
as much as the RPCs they wrapped, and even one `grpc.aio.ServerInterceptor` costs a coroutine and
a handler lookup on every call (a tenth of a small RPC's CPU). It wraps unary-unary handlers
only: every Meshplate RPC is unary, and the streaming RPCs of the health and reflection services
need none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias, cast

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace

from meshplate_core.callers import Callers
from meshplate_core.errors import (
    AlreadyExistsError,
    ConflictError,
    DomainError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from meshplate_core.logging import request_id
from meshplate_core.metrics import RpcMetrics
from meshplate_core.mtls import caller
from meshplate_core.outages import is_outage
from meshplate_core.tracing import extract, recording, span

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "x-request-id"
_TRACE_KEYS = frozenset({"traceparent", "tracestate"})
_UNTRACED_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
_SERVER_FAILURES = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
# Trailing metadata on every status a service chose on purpose (a domain error), so a caller can
# tell "the service said UNAVAILABLE" from "the service could not be reached".
DOMAIN_ERROR_KEY = "meshplate-domain-error"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

_STATUS_BY_ERROR: dict[type[DomainError], grpc.StatusCode] = {
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    AlreadyExistsError: grpc.StatusCode.ALREADY_EXISTS,
    ConflictError: grpc.StatusCode.ABORTED,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    UnavailableError: grpc.StatusCode.UNAVAILABLE,
}

Context = grpc.aio.ServicerContext[Any, Any]
Behavior = Callable[[Any, Context], Any]
if TYPE_CHECKING:
    # Subscriptable in the stubs only.
    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]


def status_for(exc: DomainError) -> grpc.StatusCode:
    """The status of a domain error: its nearest mapped base class, else FAILED_PRECONDITION."""
    for cls in type(exc).__mro__:
        if cls in _STATUS_BY_ERROR:
            return _STATUS_BY_ERROR[cls]
    return grpc.StatusCode.FAILED_PRECONDITION


def trailers_for(exc: DomainError) -> tuple[tuple[str, str], ...]:
    """Machine-readable extras of an error, sent as trailing metadata."""
    origin = ((DOMAIN_ERROR_KEY, type(exc).__name__),)
    if isinstance(exc, InvalidArgumentError) and exc.field:
        return (*origin, ("field", exc.field))
    if isinstance(exc, ResourceExhaustedError):
        return (*origin, ("retry-after", str(exc.retry_after_s)))
    return origin


def trailer(exc: grpc.aio.AioRpcError, key: str) -> str | None:
    """One of those extras, read back from a failed call (None when it has none)."""
    for name, value in exc.trailing_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return None


def valid_request_id(value: str | None) -> str:
    """The caller's request id when it has the shape of one (1-128 of letters, digits and
    `. _ : -`, as Envoy's edge also checks), otherwise a fresh one."""
    if value and _REQUEST_ID.fullmatch(value):
        return value
    # An identifier, not a secret: the cheap generator is enough (uuid4 reads the OS's).
    return f"{random.getrandbits(128):032x}"


class RpcInterceptor:
    """Meshplate's behaviour around every unary RPC (counted in `metrics`, when given).

    - The caller's `x-request-id` (or a new one) is in the log context of the RPC.
    - The caller's trace continues in a server span per RPC (health checks and reflection are not
      traced). A span is an error only when the service failed (INTERNAL, UNKNOWN, UNAVAILABLE,
      DATA_LOSS), not when it answered NOT_FOUND and the like. Without an exporting tracer no
      span is made, but the caller's context is current, so the calls made from here carry it.
    - Domain errors become their status, with their extras as trailing metadata; a dependency
      found out (meshplate_core.outages: a database or Redis unreachable or restarting) becomes
      UNAVAILABLE; anything else unexpected becomes INTERNAL, logged, its text never sent.
    - Every RPC is counted and timed by its final status.
    - With `callers` (the tables of meshplate_core.callers, on a mutual-TLS server), a call of a
      listed service from a workload its table does not name is refused with PERMISSION_DENIED,
      logged with the caller's identity and counted; health and reflection are open to every
      workload of the CA.
    """

    def __init__(self, metrics: RpcMetrics | None = None, callers: Iterable[Callers] = ()) -> None:
        self._metrics = metrics
        self._callers = {table.service: table for table in callers}

    def wrap(self, service: str, handlers: Mapping[str, Handler]) -> dict[str, Handler]:
        """A service's method handlers (by method name), the unary ones wrapped."""
        return {
            name: self._wrap(handler, f"/{service}/{name}")
            if handler.unary_unary is not None
            else handler
            for name, handler in handlers.items()
        }

    def _wrap(self, handler: Handler, method: str) -> Handler:
        # The stubs type handlers as synchronous; under grpc.aio they may be coroutines.
        behavior = cast(Behavior, handler.unary_unary)
        span_name = method.lstrip("/")
        service, _, name = span_name.partition("/")
        traced = service not in _UNTRACED_SERVICES
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        table = self._callers.get(service)
        allowed = table.allowed(name) if table is not None else None

        async def wrapped(request: Any, context: Context) -> Any:
            rid: str | None = None
            carrier: dict[str, str] = {}
            for key, value in context.invocation_metadata() or ():
                if key == REQUEST_ID_KEY and isinstance(value, str):
                    rid = value
                elif key in _TRACE_KEYS and isinstance(value, str):
                    carrier[key] = value
            token = request_id.set(valid_request_id(rid))
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                with _server_span(span_name, carrier, attributes, traced=traced) as current:
                    try:
                        if allowed is not None and (who := caller(context)) not in allowed:
                            await self._refuse(context, method, who)
                        return await _guarded(behavior, request, context, method)
                    except grpc.aio.AbortError:
                        code = context.code() or grpc.StatusCode.UNKNOWN
                        if current is not None:
                            current.set_attribute("rpc.grpc.status_code", code.value[0])
                            if code in _SERVER_FAILURES:
                                current.set_status(trace.StatusCode.ERROR, code.name)
                        raise
            except asyncio.CancelledError:
                # The caller went away, or its deadline passed: not the service's error.
                remaining = context.time_remaining()
                expired = remaining is not None and remaining <= 0
                code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
                raise
            except grpc.aio.AbortError:
                raise
            except BaseException:
                code = grpc.StatusCode.INTERNAL
                raise
            finally:
                request_id.reset(token)
                if self._metrics is not None:
                    self._metrics.observe(method, code.name, time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(
            cast(Any, wrapped),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def _refuse(self, context: Context, method: str, who: str | None) -> None:
        """Refuse a call its caller may not make: PERMISSION_DENIED, logged, counted."""
        log.warning(
            "refused %s to %s: not among its callers", method, who or "a caller without identity"
        )
        if self._metrics is not None:
            self._metrics.refuse(method, who or "unknown")
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED, f"{who or 'this caller'} may not call {method}"
        )


async def _guarded(behavior: Behavior, request: Any, context: Context, method: str) -> Any:
    try:
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result
    except DomainError as exc:
        await context.abort(status_for(exc), str(exc), trailing_metadata=trailers_for(exc))
    except grpc.aio.AbortError:
        raise
    except NotImplementedError:
        # The generated base servicer raises this for RPCs a service does not implement yet.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
    except Exception as exc:
        if is_outage(exc):
            # Not a bug: a database or Redis is out for now (the caller may retry).
            log.warning("%s: a dependency is unavailable: %r", method, exc)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "a dependency is unavailable")
        log.exception("unexpected error in %s", method)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")


@contextlib.contextmanager
def _server_span(
    method: str, carrier: dict[str, str], attributes: dict[str, str], *, traced: bool
) -> Iterator[trace.Span | None]:
    """A server span continuing the caller's trace, when spans are exported; else the caller's
    context made current (so calls from here still carry it), at a fraction of the cost."""
    if traced and recording():
        with span(
            method, parent=extract(carrier), kind=trace.SpanKind.SERVER, attributes=attributes
        ) as current:
            yield current
        return
    token = otel_context.attach(extract(carrier)) if carrier else None
    try:
        yield None
    finally:
        if token is not None:
            otel_context.detach(token)
