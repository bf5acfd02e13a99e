"""Signing in to the panel: a superuser's username or e-mail and password, checked by auth with the
REST login's throttle (gateway.logins), then a session in Redis (gateway.admin.sessions) named by
a cookie: HttpOnly, SameSite=Strict, Secure outside a local run, scoped to /admin.

Every request of a signed-in browser finds its session, verifies its access token as the REST API
verifies a bearer token (signature, expiry, revocations), refreshing it through auth when it has
expired (one refresh at a time in a process: a request that waited uses the tokens the other
got), and asks users for the user as they are now: a user deleted, or no longer a superuser, ends
the session there and then. The verified claims go on `request.state.admin_claims`: every
view calls the services with them, as that superuser.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.status import HTTP_303_SEE_OTHER
from starlette_admin.auth import AdminUser, AuthProvider
from starlette_admin.exceptions import LoginFailed
from starlette_admin.helpers import index_url, safe_redirect_url

from gateway.admin.problems import SHOWN, describe
from gateway.admin.sessions import Session, Sessions
from gateway.clients import AuthClient, RateLimitClient, UsersClient
from gateway.limiting import TrustedProxies, client_ip
from gateway.logins import log_in
from gateway.settings import Settings
from meshplate_core.authenticator import Authenticator
from meshplate_core.errors import DomainError
from meshplate_core.tokens import Claims, InvalidTokenError

log = logging.getLogger(__name__)

COOKIE = "meshplate_admin"


class SignIn(AuthProvider):
    """starlette-admin's username and password page, backed by auth, users and Redis."""

    def __init__(self, settings: Settings, *, path: str) -> None:
        super().__init__()
        self._settings = settings
        self._path = path
        self._trusted = TrustedProxies(settings.trusted_proxies)
        # One refresh at a time in this process: a refresh token is good for one rotation, and
        # a page's requests arrive together.
        self._refreshing = asyncio.Lock()

    def _sessions(self, request: Request) -> Sessions:
        return Sessions(
            request.state.redis,
            idle_s=self._settings.admin_session_idle_s,
            max_s=self._settings.admin_session_max_s,
        )

    async def login(
        self, username: str, password: str, remember_me: bool, request: Request
    ) -> Response | None:
        """Check the credentials through auth, refuse anyone but a superuser, and open a new
        session (the one the browser brought, if any, ends: its id is never reused)."""
        auth: AuthClient = request.state.auth
        limits: RateLimitClient = request.state.ratelimit
        address = client_ip(request.scope, request.headers, self._trusted)
        try:
            access, refresh = await log_in(auth, limits, username, password, client_ip=address)
            claims = await _authenticator(request).authenticate(access)
        except SHOWN as exc:
            raise LoginFailed(_login_problem(exc)) from None
        if not claims.is_superuser:
            await _quietly_log_out(auth, access, refresh)
            raise LoginFailed("Only superusers may sign in here.")
        sessions = self._sessions(request)
        if (old := request.cookies.get(COOKIE)) is not None:
            await sessions.end(old)
        session = await sessions.open(claims.user_id, access, refresh)
        fallback = index_url(request)
        target = safe_redirect_url(request.query_params.get("next") or fallback, request, fallback)
        response = RedirectResponse(target, status_code=HTTP_303_SEE_OTHER)
        response.set_cookie(
            COOKIE,
            session.cookie,
            path=self._path,
            httponly=True,
            samesite="strict",
            secure=self._settings.environment != "local",
        )
        return response

    async def authenticate(self, request: Request) -> AdminUser | None:
        """The signed-in superuser of this request, or None (the sign-in page)."""
        cookie = request.cookies.get(COOKIE)
        # Assets are served to anyone (the sign-in page needs them): no session work for them.
        if cookie is None or request.url.path.startswith(f"{self._path}/static/"):
            return None
        sessions = self._sessions(request)
        # The dashboard's own refreshes (`?auto=1`) are not an operator's activity.
        session = await sessions.find(cookie, renew=request.query_params.get("auto") != "1")
        if session is None:
            return None
        claims = await self._current_claims(request, sessions, session)
        if claims is None:
            await sessions.end(cookie)
            return None
        users: UsersClient = request.state.users
        try:
            user = await users.account(claims.user_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                raise
            user = None
        if user is None or not user.is_superuser:
            log.info("admin session of user %d ended: no longer a superuser", claims.user_id)
            await sessions.end(cookie)
            return None
        request.state.admin_claims = claims
        return AdminUser(username=user.username)

    async def _current_claims(
        self, request: Request, sessions: Sessions, session: Session
    ) -> Claims | None:
        """The session's access token verified, refreshed through auth once it has expired;
        None when it was revoked or cannot be refreshed."""
        authenticator = _authenticator(request)
        try:
            return await authenticator.authenticate(session.access)
        except InvalidTokenError:
            pass
        async with self._refreshing:
            latest = await sessions.find(session.cookie, renew=False)
            if latest is None:
                return None
            if latest.access == session.access:
                latest = await self._refresh(request, sessions, latest)
        if latest is None:
            return None
        try:
            return await authenticator.authenticate(latest.access)
        except InvalidTokenError:
            return None

    @staticmethod
    async def _refresh(request: Request, sessions: Sessions, session: Session) -> Session | None:
        """The session with rotated tokens; None when auth refuses its refresh token."""
        auth: AuthClient = request.state.auth
        try:
            access, refresh = await auth.refresh(session.refresh)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNAUTHENTICATED:
                return None
            raise
        return await sessions.renew_tokens(session, access, refresh)

    async def logout(self, request: Request) -> Response | None:
        """End the session at once and revoke its tokens."""
        cookie = request.cookies.get(COOKIE)
        if cookie is not None:
            sessions = self._sessions(request)
            session = await sessions.find(cookie, renew=False)
            await sessions.end(cookie)
            if session is not None:
                await _quietly_log_out(request.state.auth, session.access, session.refresh)
        response = RedirectResponse(
            request.url_for(request.app.state.ROUTE_NAME + ":login"),
            status_code=HTTP_303_SEE_OTHER,
        )
        response.delete_cookie(
            COOKIE,
            path=self._path,
            httponly=True,
            samesite="strict",
            secure=self._settings.environment != "local",
        )
        return response


def _authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.state.authenticator
    return authenticator


def _login_problem(exc: grpc.aio.AioRpcError | DomainError) -> str:
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() is grpc.StatusCode.UNAUTHENTICATED:
        return "Wrong username, e-mail or password."
    return describe(exc)


async def _quietly_log_out(auth: AuthClient, access: str, refresh: str) -> None:
    """Revoke tokens nobody will use; a failure leaves them to expire."""
    try:
        await auth.logout(access, refresh)
    except grpc.aio.AioRpcError as exc:
        log.warning("could not revoke an admin sign-in's tokens: %s", exc.code().name)
