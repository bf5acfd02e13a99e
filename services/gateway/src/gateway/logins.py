"""Logging in with a username or e-mail and a password, throttled per address and username: the
REST login and the admin panel's sign-in share it, so one budget of attempts covers both."""

from __future__ import annotations

import logging

import grpc

from gateway.clients import AuthClient, RateLimitClient
from meshplate_core.errors import ResourceExhaustedError

# Login attempts are counted here by the ratelimit service, under a rule of their own.
LOGIN_ATTEMPTS_PATH = "/api/v1/login/attempts"

log = logging.getLogger(__name__)


async def log_in(
    auth: AuthClient, limits: RateLimitClient, username: str, password: str, *, client_ip: str
) -> tuple[str, str]:
    """An access and a refresh token for the credentials (auth's errors as they are); too many
    failed attempts from one address for one username: ResourceExhaustedError (429)."""
    subject = f"login:{client_ip}:{username.strip().lower()}"
    # Counted before the password is checked, so parallel guesses cannot outrun the count; a
    # successful login gives its attempt back, so only failures add up.
    attempts = await limits.check(subject, None, LOGIN_ATTEMPTS_PATH)
    if not attempts.allowed:
        raise ResourceExhaustedError(
            "Rate limit exceeded.", retry_after_s=max(1, attempts.retry_after_s)
        )
    access, refresh = await auth.login(username, password, client_ip=client_ip)
    try:
        await limits.give_back(subject, LOGIN_ATTEMPTS_PATH)
    except grpc.aio.AioRpcError as exc:
        # The login stands; its attempt stays counted until the window passes.
        log.warning("could not give a login attempt back: %s", exc.code().name)
    return access, refresh
