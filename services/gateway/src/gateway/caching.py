"""HTTP caching headers (pure ASGI): Cache-Control by audience, ETag, 304 Not Modified.

Successful GETs of the API get an ETag (a hash of the body) and `Cache-Control: public,
max-age=CLIENT_CACHE_MAX_AGE` when anonymous or `private, no-cache` when authenticated (the
client keeps the copy but revalidates it), with `Vary: Authorization`; a matching
`If-None-Match` is answered 304 without a body. Other authenticated answers are
`private, no-cache`. Routes that set their own Cache-Control (login, health, errors: `no-store`)
keep it.
"""

from __future__ import annotations

import hashlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_CACHED_PREFIXES = ("/api/v1/",)
_PRIVATE = b"private, no-cache"
_VARY = b"vary"


def etag_of(body: bytes) -> str:
    """A strong validator of these exact bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    candidates = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return "*" in candidates or etag in candidates


class CacheHeadersMiddleware:
    """Adds Cache-Control, ETag and Vary, and answers 304 when the client's copy is current."""

    def __init__(self, app: ASGIApp, *, max_age_s: int) -> None:
        self.app = app
        self.public = f"public, max-age={max_age_s}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_CACHED_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Headers(scope=scope)
        authenticated = "authorization" in request
        audience = _PRIVATE if authenticated else self.public
        if scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, self._label(send, authenticated))
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffer(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            assert start is not None
            await self._finish(start, b"".join(chunks), request, audience, send)

        await self.app(scope, receive, buffer)

    def _label(self, send: Send, authenticated: bool) -> Send:
        async def labelled(message: Message) -> None:
            if message["type"] == "http.response.start" and authenticated:
                headers = MutableHeaders(scope=message)
                if "cache-control" not in headers and message["status"] < 400:
                    headers["Cache-Control"] = "private, no-cache"
            await send(message)

        return labelled

    async def _finish(
        self, start: Message, body: bytes, request: Headers, audience: bytes, send: Send
    ) -> None:
        raw: list[tuple[bytes, bytes]] = list(start.get("headers", ()))
        if start["status"] != 200 or any(name == b"cache-control" for name, _ in raw):
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        # Appended as they are: no route sets an ETag or a Vary of its own.
        etag = etag_of(body)
        raw += [(b"etag", etag.encode()), (b"cache-control", audience), (_VARY, b"Authorization")]
        if _matches(request.get("if-none-match"), etag):
            kept = [(k, v) for k, v in raw if k not in (b"content-length", b"content-type")]
            await send({"type": "http.response.start", "status": 304, "headers": kept})
            await send({"type": "http.response.body", "body": b""})
            return
        start["headers"] = raw
        await send(start)
        await send({"type": "http.response.body", "body": body})
