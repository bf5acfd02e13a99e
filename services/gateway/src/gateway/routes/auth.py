"""Login, refresh, logout and the public keys (docs/api.md "Auth")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Cookie, Form, Request, Response

from gateway.deps import AppSettings, Auth, CurrentUser, Limits
from gateway.errors import NO_STORE
from gateway.logins import log_in
from gateway.schemas import Message, Password, Text, Token
from gateway.settings import Settings
from meshplate_core.tokens import InvalidTokenError

router = APIRouter(tags=["auth"])

REFRESH_COOKIE = "refresh_token"


def _set_refresh_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(
        REFRESH_COOKIE,
        token,
        max_age=settings.refresh_token_expire_days * 86400,
        httponly=True,
        samesite="lax",
        secure=settings.environment != "local",
    )


@router.post("/api/v1/login")
async def login(
    username: Annotated[Text, Form(min_length=1, max_length=254)],
    password: Annotated[Password, Form()],
    request: Request,
    response: Response,
    auth: Auth,
    limits: Limits,
    settings: AppSettings,
) -> Token:
    """Log in with a username or e-mail and a password (form fields); too many failed attempts
    from one address for one username are answered 429 for a while."""
    client_ip: str = request.state.client_ip
    access, refresh = await log_in(auth, limits, username, password, client_ip=client_ip)
    _set_refresh_cookie(response, refresh, settings)
    response.headers.update(NO_STORE)
    return Token(access_token=access)


@router.post("/api/v1/refresh")
async def refresh(
    response: Response,
    auth: Auth,
    settings: AppSettings,
    refresh_token: Annotated[str | None, Cookie()] = None,
) -> Token:
    """A new access token, and a new refresh cookie, for the refresh cookie (rotation)."""
    if not refresh_token:
        raise InvalidTokenError("Refresh token missing.")
    access, rotated = await auth.refresh(refresh_token)
    _set_refresh_cookie(response, rotated, settings)
    response.headers.update(NO_STORE)
    return Token(access_token=access)


@router.post("/api/v1/logout")
async def logout(
    user: CurrentUser,
    request: Request,
    response: Response,
    auth: Auth,
    settings: AppSettings,
    refresh_token: Annotated[str | None, Cookie()] = None,
) -> Message:
    """Revoke the access token, its login and the refresh cookie's; clear the cookie."""
    token = request.headers["authorization"].partition(" ")[2]
    await auth.logout(token, refresh_token)
    response.delete_cookie(
        REFRESH_COOKIE, httponly=True, samesite="lax", secure=settings.environment != "local"
    )
    response.headers.update(NO_STORE)
    return Message(message="Logged out successfully")


@router.get("/.well-known/jwks.json")
async def jwks(auth: Auth, response: Response) -> dict[str, Any]:
    """The public keys that verify Meshplate's tokens (JWKS, RFC 7517)."""
    response.headers["Cache-Control"] = "public, max-age=300"
    return {"keys": await auth.jwks()}
