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
        self.public = f"public, max-age={max_age_s}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(_CACHED_PREFIXES):
            await self.app(scope, receive, send)
            return
        request = Headers(scope=scope)
        authenticated = "authorization" in request
        audience = "private, no-cache" if authenticated else self.public
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
        self, start: Message, body: bytes, request: Headers, audience: str, send: Send
    ) -> None:
        headers = MutableHeaders(scope=start)
        if start["status"] != 200 or "cache-control" in headers:
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        etag = etag_of(body)
        headers["ETag"] = etag
        headers["Cache-Control"] = audience
        headers.append("Vary", "Authorization")
        if _matches(request.get("if-none-match"), etag):
            not_modified = MutableHeaders(
                raw=[
                    (k, v) for k, v in headers.raw if k not in (b"content-length", b"content-type")
                ]
            )
            await send({"type": "http.response.start", "status": 304, "headers": not_modified.raw})
            await send({"type": "http.response.body", "body": b""})
            return
        await send(start)
        await send({"type": "http.response.body", "body": body})
