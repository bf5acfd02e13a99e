"""The users service as auth sees it: credentials in, the token subject out."""

from __future__ import annotations

import grpc

from auth.domain import Subject
from meshplate.users.v1 import users_pb2, users_pb2_grpc
from meshplate_core.channels import Caller
from meshplate_core.errors import ResourceExhaustedError, UnavailableError
from meshplate_core.interceptors import trailer
from meshplate_core.tokens import InvalidTokenError

_DOWN = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class InvalidCredentialsError(InvalidTokenError):
    """The users service did not recognise the credentials (never says which part was wrong)."""

    def __init__(self) -> None:
        super().__init__("Wrong username, email or password.")


def _subject(user: users_pb2.User) -> Subject:
    return Subject(
        user_id=user.id,
        tier_id=user.tier_id if user.HasField("tier_id") else None,
        is_superuser=user.is_superuser,
    )


class UsersDirectory:
    """Calls to the users service, with auth's deadline and the caller's request id."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float) -> None:
        self._stub = users_pb2_grpc.UsersServiceStub(channel)
        self._call = Caller(timeout_s=timeout_s)

    async def check_credentials(
        self, username_or_email: str, password: str, *, time_left_s: float | None = None
    ) -> Subject:
        """The subject these credentials belong to, asked within auth's deadline or the
        caller's remaining time, whichever ends first (users sizes its wait by it)."""
        request = users_pb2.VerifyCredentialsRequest(
            username_or_email=username_or_email, password=password
        )
        try:
            reply = await self._call(self._stub.VerifyCredentials, request, within_s=time_left_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT):
                raise InvalidCredentialsError() from None
            if exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED:
                # Too many password checks at once: the caller is told when to come back.
                retry_after = trailer(exc, "retry-after") or "1"
                raise ResourceExhaustedError(
                    exc.details() or "Too many logins at once.",
                    retry_after_s=max(1, int(retry_after)) if retry_after.isdecimal() else 1,
                ) from None
            raise _translated(exc) from None
        return _subject(reply.user)

    async def subject(self, user_id: int) -> Subject | None:
        """The live user with this id as a token subject, or None when they are gone."""
        try:
            reply = await self._call(self._stub.GetUser, users_pb2.GetUserRequest(id=user_id))
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                return None
            raise _translated(exc) from None
        return _subject(reply.user)


def _translated(exc: grpc.aio.AioRpcError) -> Exception:
    if exc.code() in _DOWN:
        return UnavailableError("users service unavailable")
    return exc
