"""AuthService: translates the gRPC contract to the session use cases and back, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from auth.domain import TokenPair
from auth.sessions import Sessions
from meshplate.auth.v1 import auth_pb2, auth_pb2_grpc
from meshplate_core.interceptors import Context


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _pair(pair: TokenPair) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        access_token=pair.access.token,
        access_expires_at=_timestamp(pair.access.expires_at),
        refresh_token=pair.refresh.token,
        refresh_expires_at=_timestamp(pair.refresh.expires_at),
    )


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    """The auth service."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def Login(
        self, request: auth_pb2.LoginRequest, context: Context
    ) -> auth_pb2.LoginResponse:
        pair = await self._sessions.login(
            request.username_or_email, request.password, time_left_s=context.time_remaining()
        )
        return auth_pb2.LoginResponse(tokens=_pair(pair))

    async def Refresh(
        self, request: auth_pb2.RefreshRequest, context: Context
    ) -> auth_pb2.RefreshResponse:
        pair = await self._sessions.refresh(request.refresh_token)
        return auth_pb2.RefreshResponse(tokens=_pair(pair))

    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: Context
    ) -> auth_pb2.LogoutResponse:
        await self._sessions.logout(request.access_token, request.refresh_token or None)
        return auth_pb2.LogoutResponse()

    async def RevokeUserTokens(
        self, request: auth_pb2.RevokeUserTokensRequest, context: Context
    ) -> auth_pb2.RevokeUserTokensResponse:
        before = (
            request.issued_before.ToDatetime(UTC) if request.HasField("issued_before") else None
        )
        await self._sessions.revoke_user(request.user_id, before=before)
        return auth_pb2.RevokeUserTokensResponse()

    async def Authenticate(
        self, request: auth_pb2.AuthenticateRequest, context: Context
    ) -> auth_pb2.AuthenticateResponse:
        claims = await self._sessions.authenticate(request.access_token)
        principal = auth_pb2.Principal(
            user_id=claims.user_id,
            is_superuser=claims.is_superuser,
            token_id=claims.token_id,
            expires_at=_timestamp(datetime.fromtimestamp(claims.expires_at, UTC)),
        )
        if claims.tier_id is not None:
            principal.tier_id = claims.tier_id
        return auth_pb2.AuthenticateResponse(principal=principal)

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: Context
    ) -> auth_pb2.GetJwksResponse:
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**jwk) for jwk in self._sessions.jwks()])

    async def PurgeExpired(
        self, request: auth_pb2.PurgeExpiredRequest, context: Context
    ) -> auth_pb2.PurgeExpiredResponse:
        revocations, families = await self._sessions.purge()
        return auth_pb2.PurgeExpiredResponse(
            revocations_removed=revocations, families_removed=families
        )
