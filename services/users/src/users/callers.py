"""Who may call which RPC of the users service (meshplate_core.callers): the gateway for what the
REST API does, auth to check passwords and read the user it issues tokens for, the worker for the
lists its reports page through. Anyone else is refused."""

from __future__ import annotations

from meshplate.users.v1 import users_pb2
from meshplate_core.callers import Callers

GATEWAY, AUTH, WORKER = "gateway", "auth", "worker"


def callers() -> list[Callers]:
    """The users service's table."""
    return [
        Callers.of(
            users_pb2.DESCRIPTOR.services_by_name["UsersService"],
            {
                "CreateUser": {GATEWAY},
                "GetUser": {GATEWAY, AUTH},
                "ListUsers": {GATEWAY, WORKER},
                "UpdateUser": {GATEWAY},
                "DeleteUser": {GATEWAY},
                "VerifyCredentials": {AUTH},
                "SetUserTier": {GATEWAY},
                "RestoreUser": {GATEWAY},
                "SetSuperuser": {GATEWAY},
                "CreateTier": {GATEWAY},
                "GetTier": {GATEWAY},
                "ListTiers": {GATEWAY, WORKER},
                "UpdateTier": {GATEWAY},
                "DeleteTier": {GATEWAY},
                "CreatePost": {GATEWAY},
                "GetPost": {GATEWAY},
                "ListPosts": {GATEWAY},
                "UpdatePost": {GATEWAY},
                "DeletePost": {GATEWAY},
            },
        )
    ]
