"""AuthService: translates the gRPC contract to the domain and back, nothing else."""

from __future__ import annotations

from meshplate.auth.v1 import auth_pb2_grpc


class AuthService(auth_pb2_grpc.AuthServiceServicer):
    """The auth service. Its RPCs are not built yet and answer UNIMPLEMENTED (see the issues)."""
