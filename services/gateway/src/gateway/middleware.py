"""Pure ASGI middleware (a Starlette BaseHTTPMiddleware alone caps a route near 2.8k req/s)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshplate_core.interceptors import REQUEST_ID_KEY, valid_request_id
from meshplate_core.logging import request_id

_HEADER = REQUEST_ID_KEY.encode()


class RequestIdMiddleware:
    """Takes the caller's `X-Request-ID` (or makes one), logs with it, and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((value for name, value in scope["headers"] if name == _HEADER), None)
        rid = valid_request_id(raw.decode("latin-1") if raw is not None else None)
        header = (_HEADER, rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = request_id.set(rid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)
