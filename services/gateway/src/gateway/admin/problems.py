"""What the panel says of an action: when a call fails, the words the REST API answers with, as a
message on the page (a field's error on its field) instead of a status code; when it succeeds, a
message on the page that follows."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
from starlette.requests import Request
from starlette_admin import flash
from starlette_admin.exceptions import ActionFailed

from gateway.errors import safe_detail
from meshplate_core.errors import DomainError
from meshplate_core.interceptors import trailer

# Failures to show; anything else is a bug and goes to the error handlers.
SHOWN = (grpc.aio.AioRpcError, DomainError)


def describe(exc: grpc.aio.AioRpcError | DomainError) -> str:
    """The message of a failed call or of a refusal of the gateway's own."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return safe_detail(exc)
    return str(exc)


@contextlib.contextmanager
def as_message() -> Iterator[None]:
    """A call failing in the block becomes the action's message (ActionFailed)."""
    try:
        yield
    except SHOWN as exc:
        raise ActionFailed(describe(exc)) from None


def field_of(exc: grpc.aio.AioRpcError | DomainError) -> str | None:
    """The field a call's error is about, when it names one."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return trailer(exc, "field")
    return None


def succeeded(request: Request, message: str) -> str:
    """Show `message` on the next page (row actions' own return values are not shown)."""
    flash(request, message, "success")
    return message
