"""Rate limiting of every `/api/v1` request (pure ASGI), as docs/design.md's lifecycle orders it.

The caller is authenticated first (a verified user id is the subject; an unverified one would let
anyone spend someone else's quota), then one call to ratelimit decides. Requests without a valid
token count against the client's IP, taken from `X-Forwarded-For` only when the peer is a trusted
proxy. Over the limit: 429 `{"detail": "Rate limit exceeded."}` with `Retry-After`; every limited
answer carries `X-RateLimit-Limit`, `-Remaining` and `-Reset`. The verified identity is left in
the request state, so routes do not verify the token again.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Sequence

import grpc
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.clients import RateLimitClient
from gateway.clients.ratelimit import Verdict
from gateway.middleware import answer
from meshplate_core.authenticator import Authenticator
from meshplate_core.errors import DomainError
from meshplate_core.interceptors import DOMAIN_ERROR_KEY

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LIMITED_PREFIX = "/api/v1/"


class TrustedProxies:
    """The trusted proxies setting (addresses or CIDR blocks), and which peers are among them;
    a peer's answer is kept (the same few proxies, or clients, connect again and again)."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.networks: list[Network] = [
            ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip()
        ]
        self.trust = functools.lru_cache(maxsize=4096)(self._trust)

    def _trust(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)


def client_ip(scope: Scope, headers: Headers, trusted: TrustedProxies) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy (Envoy); then the
    last `X-Forwarded-For` entry, the one that proxy appended. Every earlier entry came from the
    client and could be anything, even an address inside the trusted ranges."""
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not trusted.trust(peer):
        return peer
    hops = [hop.strip() for hop in headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    return hops[-1] if hops else peer


def rate_headers(verdict: Verdict) -> dict[str, str]:
    """The X-RateLimit-* headers of a decision."""
    return {
        "X-RateLimit-Limit": str(verdict.limit),
        "X-RateLimit-Remaining": str(verdict.remaining),
        "X-RateLimit-Reset": str(verdict.reset_s),
    }


def bearer_token(headers: Headers) -> str | None:
    """The token of an `Authorization: Bearer` header."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class RateLimitMiddleware:
    """Authenticates (when a token is sent), asks ratelimit, answers 429 or labels the answer."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: Sequence[str], fail_open: bool) -> None:
        self.app = app
        self.trusted = TrustedProxies(trusted_proxies)
        self.fail_open = fail_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PREFIX):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        headers = Headers(scope=scope)
        state["client_ip"] = client_ip(scope, headers, self.trusted)
        subject, tier_id = await self._identify(scope, state, headers)
        limiter: RateLimitClient = state["ratelimit"]
        try:
            verdict = await limiter.check(subject, tier_id, scope["path"])
        except grpc.aio.AioRpcError as exc:
            log.warning("rate limiter unavailable: %s", exc.code().name)
            decided = any(key == DOMAIN_ERROR_KEY for key, _ in exc.trailing_metadata() or ())
            # A limiter that answered "closed" is obeyed; one that cannot be reached follows ours.
            if self.fail_open and not decided:
                await self.app(scope, receive, send)
            else:
                await answer(send, 503, {"detail": "Service unavailable"}, {})
            return
        if not verdict.allowed:
            extra = {**rate_headers(verdict), "Retry-After": str(max(1, verdict.retry_after_s))}
            await answer(send, 429, {"detail": "Rate limit exceeded."}, extra)
            return

        # Appended as they are: nothing inside sets these headers.
        labels = [
            (name.lower().encode(), value.encode()) for name, value in rate_headers(verdict).items()
        ]

        async def labelled(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *labels]
            await send(message)

        await self.app(scope, receive, labelled)

    async def _identify(
        self, scope: Scope, state: dict[str, object], headers: Headers
    ) -> tuple[str, int | None]:
        token = bearer_token(headers)
        if token is not None:
            # The lifespan state is a plain dict here (raw ASGI), typed as objects.
            authenticator: Authenticator = state["authenticator"]  # type: ignore[assignment]
            try:
                claims = await authenticator.authenticate(token)
            except DomainError as exc:
                # Counted as anonymous, then answered by the route (401, or 503).
                state["principal_error"] = exc
            else:
                state["principal"] = claims
                return f"user:{claims.user_id}", claims.tier_id
        return f"ip:{state['client_ip']}", None
