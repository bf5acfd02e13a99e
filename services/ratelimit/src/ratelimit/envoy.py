"""Envoy's `ShouldRateLimit`, answered from the same rules and counters as `CheckLimit`.

Descriptors of the configured domain map to checks: `remote_address` alone is a per-address edge
limit (`RATELIMIT_EDGE_LIMIT` per `RATELIMIT_EDGE_PERIOD_S`); `user_id` (or `remote_address`)
with `path` is the same check the gateway makes. Other domains and descriptors are not limited
(OK), as Envoy's reference service does for descriptors it has no rule for.
"""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration

from envoy_rls import rls_pb2, rls_pb2_grpc
from meshplate_core.interceptors import Context
from ratelimit.domain import Decision
from ratelimit.limiter import Limiter
from ratelimit.tiers import TierProjection

Response = rls_pb2.RateLimitResponse
EDGE_PATH = "/edge"

_UNITS = {
    1: Response.RateLimit.SECOND,
    60: Response.RateLimit.MINUTE,
    3600: Response.RateLimit.HOUR,
    86400: Response.RateLimit.DAY,
}


def _check_for(entries: dict[str, str]) -> tuple[str, str] | None:
    """(subject, path) of a descriptor, or None when it is not one of ours."""
    if "user_id" in entries and "path" in entries:
        return f"user:{entries['user_id']}", entries["path"]
    if "remote_address" in entries:
        return f"ip:{entries['remote_address']}", entries.get("path", EDGE_PATH)
    return None


def _status(decision: Decision, period_s: int) -> Response.DescriptorStatus:
    return Response.DescriptorStatus(
        code=Response.OK if decision.allowed else Response.OVER_LIMIT,
        current_limit=Response.RateLimit(
            requests_per_unit=decision.limit,
            unit=_UNITS.get(period_s, Response.RateLimit.UNKNOWN),
        ),
        limit_remaining=decision.remaining,
        duration_until_reset=Duration(seconds=decision.reset_s),
    )


class EnvoyRateLimitService(rls_pb2_grpc.RateLimitServiceServicer):
    """Envoy's rate limit service API over Meshplate's limiter."""

    def __init__(self, limiter: Limiter, tiers: TierProjection, *, domain: str) -> None:
        self._limiter = limiter
        self._tiers = tiers
        self._domain = domain

    async def ShouldRateLimit(
        self, request: rls_pb2.RateLimitRequest, context: Context
    ) -> rls_pb2.RateLimitResponse:
        hits = request.hits_addend or 1
        statuses = []
        for descriptor in request.descriptors:
            entries = {entry.key: entry.value for entry in descriptor.entries}
            check = _check_for(entries) if request.domain == self._domain else None
            if check is None:
                statuses.append(Response.DescriptorStatus(code=Response.OK))
                continue
            subject, path = check
            tier_id = self._tiers.tier_of(subject, None)
            decision = await self._limiter.check(subject, tier_id, path, hits)
            statuses.append(_status(decision, self._limiter.resolve(tier_id, path).period_s))
        over = any(status.code == Response.OVER_LIMIT for status in statuses)
        return Response(
            overall_code=Response.OVER_LIMIT if over else Response.OK, statuses=statuses
        )
