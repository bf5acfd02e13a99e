"""Server interceptors: the request id into the log context, domain errors into status codes,
every RPC counted and timed.

Both wrap unary-unary handlers only: every Meshplate RPC is unary, and the streaming RPCs of the
health and reflection services need neither.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import grpc
from opentelemetry import trace

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
from meshplate_core.tracing import extract, span

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "x-request-id"
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
_MAX_REQUEST_ID_LENGTH = 128

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
_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")
Behavior = Callable[[Any, Context], Any]


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
    """The caller's request id when it is sane, otherwise a fresh one."""
    if value and len(value) <= _MAX_REQUEST_ID_LENGTH and value.isascii() and value.isprintable():
        return value
    return uuid.uuid4().hex


class _UnaryInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        # The stubs type handlers as synchronous; under grpc.aio they may be coroutines.
        behavior = cast(Behavior, handler.unary_unary)

        async def wrapped(request: Any, context: Context) -> Any:
            return await self.around(behavior, request, context, handler_call_details)

        return grpc.unary_unary_rpc_method_handler(
            cast(Any, wrapped),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def around(
        self, behavior: Behavior, request: Any, context: Context, details: grpc.HandlerCallDetails
    ) -> Any:
        raise NotImplementedError


async def _call(behavior: Behavior, request: Any, context: Context) -> Any:
    result = behavior(request, context)
    return await result if inspect.isawaitable(result) else result


class RequestIdInterceptor(_UnaryInterceptor):
    """Puts the caller's `x-request-id` (or a new one) into the log context of the RPC."""

    async def around(
        self, behavior: Behavior, request: Any, context: Context, details: grpc.HandlerCallDetails
    ) -> Any:
        metadata = dict(details.invocation_metadata or ())
        raw = metadata.get(REQUEST_ID_KEY)
        token = request_id.set(valid_request_id(raw if isinstance(raw, str) else None))
        try:
            return await _call(behavior, request, context)
        finally:
            request_id.reset(token)


class DomainErrorInterceptor(_UnaryInterceptor):
    """Maps domain errors to their status; anything unexpected becomes INTERNAL, logged, not leaked."""

    async def around(
        self, behavior: Behavior, request: Any, context: Context, details: grpc.HandlerCallDetails
    ) -> Any:
        try:
            return await _call(behavior, request, context)
        except DomainError as exc:
            await context.abort(status_for(exc), str(exc), trailing_metadata=trailers_for(exc))
        except grpc.aio.AbortError:
            raise
        except NotImplementedError:
            # The generated base servicer raises this for RPCs a service does not implement yet.
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "method not implemented")
        except Exception:
            log.exception("unexpected error in %s", details.method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")


class TracingInterceptor(_UnaryInterceptor):
    """Continues the caller's trace (from the call's metadata) in a server span per RPC; health
    checks and reflection are not traced. A span is an error only when the service failed
    (INTERNAL, UNKNOWN, UNAVAILABLE, DATA_LOSS), not when it answered NOT_FOUND and the like."""

    async def around(
        self, behavior: Behavior, request: Any, context: Context, details: grpc.HandlerCallDetails
    ) -> Any:
        method = details.method.lstrip("/")
        service, _, name = method.partition("/")
        if service in _UNTRACED_SERVICES:
            return await _call(behavior, request, context)
        with span(
            method,
            parent=extract(dict(details.invocation_metadata or ())),
            kind=trace.SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        ) as current:
            try:
                return await _call(behavior, request, context)
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                current.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in _SERVER_FAILURES:
                    current.set_status(trace.StatusCode.ERROR, code.name)
                raise


class MetricsInterceptor(_UnaryInterceptor):
    """Counts and times every RPC by its final status (outermost, so it sees mapped errors)."""

    def __init__(self, metrics: RpcMetrics) -> None:
        self._metrics = metrics

    async def around(
        self, behavior: Behavior, request: Any, context: Context, details: grpc.HandlerCallDetails
    ) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            return await _call(behavior, request, context)
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:
            # The caller went away, or its deadline passed: not the service's error.
            remaining = context.time_remaining()
            expired = remaining is not None and remaining <= 0
            code = grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED
            raise
        except BaseException:
            code = grpc.StatusCode.INTERNAL
            raise
        finally:
            self._metrics.observe(details.method, code.name, time.perf_counter() - started)
