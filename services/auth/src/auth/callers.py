"""Who may call which RPC of auth (meshplate_core.callers): the gateway for sessions and the
REST API's token checks, the users service for the public keys that verify the tokens forwarded
to it, the worker for its scheduled purge. Anyone else is refused."""

from __future__ import annotations

from meshplate.auth.v1 import auth_pb2
from meshplate_core.callers import Callers

GATEWAY, USERS, WORKER = "gateway", "users", "worker"


def callers() -> list[Callers]:
    """auth's table."""
    return [
        Callers.of(
            auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
            {
                "Login": {GATEWAY},
                "Refresh": {GATEWAY},
                "Logout": {GATEWAY},
                "RevokeUserTokens": {GATEWAY},
                "Authenticate": {GATEWAY},
                "GetJwks": {GATEWAY, USERS},
                "PurgeExpired": {WORKER},
            },
        )
    ]
