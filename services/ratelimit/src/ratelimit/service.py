"""RateLimitService: translates the gRPC contract to the domain and back, nothing else."""

from __future__ import annotations

from meshplate.ratelimit.v1 import ratelimit_pb2_grpc


class RateLimitService(ratelimit_pb2_grpc.RateLimitServiceServicer):
    """The ratelimit service. Its RPCs are not built yet and answer UNIMPLEMENTED (see the issues)."""
