"""The one place where errors become HTTP answers: gRPC statuses through one table, the gateway's
own domain errors, FastAPI's HTTP and validation errors, and anything unexpected
(`add_exception_handlers` registers them all)."""

from __future__ import annotations

import json
import logging

import grpc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from meshplate_core.errors import DomainError
from meshplate_core.interceptors import status_for, trailer, trailers_for
from meshplate_core.outages import is_outage

log = logging.getLogger(__name__)

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

# Details a caller may read: what services put in their statuses on purpose. For the codes not
# listed, the details may be gRPC's own words about connections or internals: a fixed text is sent.
_SAFE_DETAILS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
_FIXED_DETAILS = {
    grpc.StatusCode.CANCELLED: "Request cancelled",
    grpc.StatusCode.UNIMPLEMENTED: "Not implemented",
    grpc.StatusCode.UNAVAILABLE: "Service unavailable",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Upstream timed out",
}
NO_STORE = {"Cache-Control": "no-store"}


def safe_detail(exc: grpc.aio.AioRpcError) -> str:
    """What a failed call may tell its caller: the service's words where it wrote them for
    callers, a fixed text otherwise (logged)."""
    code = exc.code()
    if code in _SAFE_DETAILS:
        return exc.details() or "Request failed"
    log.warning("call failed: %s %s", code.name, exc.details())
    return _FIXED_DETAILS.get(code, "Internal Server Error")


def rpc_error_response(exc: grpc.aio.AioRpcError) -> JSONResponse:
    """The HTTP answer for a failed call: status from the table, a detail safe to show."""
    return _answer(
        exc.code(),
        safe_detail(exc),
        field=trailer(exc, "field"),
        retry_after=trailer(exc, "retry-after"),
    )


def trailers_dict(exc: DomainError) -> dict[str, str]:
    """A domain error's extras, as the trailing metadata of a call would carry them."""
    return dict(trailers_for(exc))


def domain_error_response(exc: DomainError) -> JSONResponse:
    """The HTTP answer for a domain error raised in the gateway itself (a bad token, say)."""
    code = status_for(exc)
    # A domain error's message is written for callers, whatever its status.
    detail = str(exc)
    extras = trailers_dict(exc)
    return _answer(code, detail, field=extras.get("field"), retry_after=extras.get("retry-after"))


def _answer(
    code: grpc.StatusCode, detail: str, *, field: str | None, retry_after: str | None
) -> JSONResponse:
    status = HTTP_STATUS.get(code, 500)
    headers = dict(NO_STORE)
    body: object = detail
    if code is grpc.StatusCode.INVALID_ARGUMENT and field is not None:
        # A field error reads like FastAPI's own validation errors.
        status = 422
        body = [{"type": "value_error", "loc": ["body", field], "msg": detail}]
    if code is grpc.StatusCode.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = "Bearer"
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and retry_after:
        headers["Retry-After"] = retry_after
    return JSONResponse({"detail": body}, status_code=status, headers=headers)


async def handle_rpc_error(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler for every `grpc.aio.AioRpcError` a route lets through."""
    assert isinstance(exc, grpc.aio.AioRpcError)
    return rpc_error_response(exc)


async def handle_domain_error(request: Request, exc: Exception) -> JSONResponse:
    """Exception handler for the domain errors of the gateway's own checks."""
    assert isinstance(exc, DomainError)
    return domain_error_response(exc)


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A dependency out (meshplate_core.outages: Redis unreachable, say): 503. Anything else is
    a bug: logged with its traceback, answered 500 without a word of it."""
    if is_outage(exc):
        log.warning("dependency unavailable on %s %s: %r", request.method, request.url.path, exc)
        return JSONResponse({"detail": "Service unavailable"}, status_code=503, headers=NO_STORE)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500, headers=NO_STORE)


async def handle_http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an HTTP error (404, 405, ...), never stored, a 405 naming every method
    the path serves."""
    assert isinstance(exc, HTTPException)
    response = await http_exception_handler(request, exc)
    response.headers.update(NO_STORE)
    if exc.status_code == 405:
        response.headers["Allow"] = _allowed(request)
    return response


def _allowed(request: Request) -> str:
    """Every method some route serves at this path. Starlette names only the methods of the
    first route whose path matched (each method of a path is a route of its own)."""
    # A scope of its own: the request's carries what routing left in it for the route it chose.
    scope = {"type": "http", "path": request.url.path, "root_path": "", "method": request.method}
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 for a request it could not validate, never stored."""
    assert isinstance(exc, RequestValidationError)
    # FastAPI's body (each error with the input it refused), written as ASCII JSON: an input
    # holding a lone surrogate cannot be encoded as UTF-8, and the answer must not fail on it.
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json", headers=NO_STORE)


def add_exception_handlers(app: FastAPI) -> None:
    """Answer every error a route lets through with the handlers of this module."""
    app.add_exception_handler(grpc.aio.AioRpcError, handle_rpc_error)
    app.add_exception_handler(DomainError, handle_domain_error)
    app.add_exception_handler(HTTPException, handle_http_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(Exception, handle_unexpected)
