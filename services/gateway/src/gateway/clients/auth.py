"""Calls to the auth service."""

from __future__ import annotations

import grpc

from meshplate.auth.v1 import auth_pb2, auth_pb2_grpc
from meshplate_core.channels import Caller
from meshplate_core.verifier import published_keys


class AuthClient:
    """Login, refresh, logout, revocation and the public keys."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout_s: float) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._call = Caller(timeout_s=timeout_s)

    async def login(
        self, username_or_email: str, password: str, *, client_ip: str
    ) -> tuple[str, str]:
        """(access token, refresh token) for valid credentials."""
        reply = await self._call(
            self._stub.Login,
            auth_pb2.LoginRequest(
                username_or_email=username_or_email, password=password, client_ip=client_ip
            ),
        )
        return reply.tokens.access_token, reply.tokens.refresh_token

    async def refresh(self, refresh_token: str) -> tuple[str, str]:
        """A rotated (access token, refresh token) pair."""
        reply = await self._call(
            self._stub.Refresh, auth_pb2.RefreshRequest(refresh_token=refresh_token)
        )
        return reply.tokens.access_token, reply.tokens.refresh_token

    async def logout(self, access_token: str, refresh_token: str | None) -> None:
        """Revoke the access token and its login."""
        await self._call(
            self._stub.Logout,
            auth_pb2.LogoutRequest(access_token=access_token, refresh_token=refresh_token or ""),
        )

    async def revoke_user(self, user_id: int) -> None:
        """Revoke every token of a user issued until now."""
        await self._call(
            self._stub.RevokeUserTokens, auth_pb2.RevokeUserTokensRequest(user_id=user_id)
        )

    async def jwks(self) -> list[dict[str, str]]:
        """The published public keys as JWKs."""
        return published_keys(await self._call(self._stub.GetJwks, auth_pb2.GetJwksRequest()))
