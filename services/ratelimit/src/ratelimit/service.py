"""RateLimitService: translates the gRPC contract to the limiter and rules and back, nothing else."""

from __future__ import annotations

from typing import Any

from meshplate.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from meshplate_core.errors import InvalidArgumentError
from meshplate_core.interceptors import Context
from ratelimit.domain import Algorithm, Check, Decision, Rule
from ratelimit.limiter import Limiter
from ratelimit.rules import Rules
from ratelimit.tiers import TierProjection

# The most checks one CheckLimits call may carry (the contract's figure).
MAX_CHECKS = 1000

_ALGORITHMS = {
    ratelimit_pb2.ALGORITHM_UNSPECIFIED: Algorithm.SLIDING_WINDOW,
    ratelimit_pb2.ALGORITHM_SLIDING_WINDOW: Algorithm.SLIDING_WINDOW,
    ratelimit_pb2.ALGORITHM_FIXED_WINDOW: Algorithm.FIXED_WINDOW,
}
_TO_PROTO = {
    Algorithm.SLIDING_WINDOW: ratelimit_pb2.ALGORITHM_SLIDING_WINDOW,
    Algorithm.FIXED_WINDOW: ratelimit_pb2.ALGORITHM_FIXED_WINDOW,
}


def _algorithm(value: int) -> Algorithm:
    if value not in _ALGORITHMS:
        raise InvalidArgumentError("unknown algorithm", field="algorithm")
    # The stubs type a proto enum's value as a NewType of int, the table's keys as its members.
    return _ALGORITHMS[value]  # type: ignore[index]


def rule_to_proto(rule: Rule) -> ratelimit_pb2.Rule:
    """The contract's view of a rule."""
    return ratelimit_pb2.Rule(
        id=rule.id,
        tier_id=rule.tier_id,
        name=rule.name,
        path=rule.path,
        limit=rule.limit,
        period_s=rule.period_s,
        algorithm=_TO_PROTO[rule.algorithm],
    )


def _decision_to_proto(decision: Decision) -> ratelimit_pb2.CheckLimitResponse:
    return ratelimit_pb2.CheckLimitResponse(
        allowed=decision.allowed,
        limit=decision.limit,
        remaining=decision.remaining,
        reset_s=decision.reset_s,
        retry_after_s=decision.retry_after_s,
    )


class RateLimitService(ratelimit_pb2_grpc.RateLimitServiceServicer):
    """The ratelimit service."""

    def __init__(self, limiter: Limiter, rules: Rules, tiers: TierProjection) -> None:
        self._limiter = limiter
        self._rules = rules
        self._tiers = tiers

    async def CheckLimit(
        self, request: ratelimit_pb2.CheckLimitRequest, context: Context
    ) -> ratelimit_pb2.CheckLimitResponse:
        decision = await self._limiter.check(*self._parse(request))
        return _decision_to_proto(decision)

    async def CheckLimits(
        self, request: ratelimit_pb2.CheckLimitsRequest, context: Context
    ) -> ratelimit_pb2.CheckLimitsResponse:
        if len(request.checks) > MAX_CHECKS:
            raise InvalidArgumentError(f"at most {MAX_CHECKS} checks per call", field="checks")
        checks = []
        for index, check in enumerate(request.checks):
            try:
                checks.append(Check(*self._parse(check)))
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"check {index}: {exc}", field=exc.field) from None
        decisions = await self._limiter.check_many(checks)
        return ratelimit_pb2.CheckLimitsResponse(results=map(_decision_to_proto, decisions))

    async def ReturnHits(
        self, request: ratelimit_pb2.ReturnHitsRequest, context: Context
    ) -> ratelimit_pb2.ReturnHitsResponse:
        if not request.subject or request.hits < 1:
            raise InvalidArgumentError("a subject and hits >= 1 are required", field="hits")
        token_tier = request.tier_id if request.HasField("tier_id") else None
        tier_id = self._tiers.tier_of(request.subject, token_tier)
        decision = await self._limiter.give_back(
            request.subject, tier_id, request.path, request.hits
        )
        return ratelimit_pb2.ReturnHitsResponse(remaining=decision.remaining)

    def _parse(self, request: ratelimit_pb2.CheckLimitRequest) -> tuple[str, int | None, str, int]:
        if not request.subject or request.hits < 0:
            raise InvalidArgumentError("a subject and hits >= 0 are required", field="subject")
        token_tier = request.tier_id if request.HasField("tier_id") else None
        tier_id = self._tiers.tier_of(request.subject, token_tier)
        return request.subject, tier_id, request.path, request.hits

    async def CreateRule(
        self, request: ratelimit_pb2.CreateRuleRequest, context: Context
    ) -> ratelimit_pb2.CreateRuleResponse:
        rule = await self._rules.create(
            tier_id=request.tier_id,
            path=request.path,
            limit=request.limit,
            period_s=request.period_s,
            name=request.name,
            algorithm=_algorithm(request.algorithm),
        )
        return ratelimit_pb2.CreateRuleResponse(rule=rule_to_proto(rule))

    async def GetRule(
        self, request: ratelimit_pb2.GetRuleRequest, context: Context
    ) -> ratelimit_pb2.GetRuleResponse:
        rule = await self._rules.get(request.tier_id, request.id)
        return ratelimit_pb2.GetRuleResponse(rule=rule_to_proto(rule))

    async def ListRules(
        self, request: ratelimit_pb2.ListRulesRequest, context: Context
    ) -> ratelimit_pb2.ListRulesResponse:
        rules, total = await self._rules.page(request.tier_id, request.page, request.items_per_page)
        return ratelimit_pb2.ListRulesResponse(rules=map(rule_to_proto, rules), total_count=total)

    async def UpdateRule(
        self, request: ratelimit_pb2.UpdateRuleRequest, context: Context
    ) -> ratelimit_pb2.UpdateRuleResponse:
        changes: dict[str, Any] = {
            field: getattr(request, field)
            for field in ("path", "limit", "period_s", "name")
            if request.HasField(field)
        }
        if request.HasField("algorithm"):
            changes["algorithm"] = _algorithm(request.algorithm)
        rule = await self._rules.change(request.tier_id, request.id, changes)
        return ratelimit_pb2.UpdateRuleResponse(rule=rule_to_proto(rule))

    async def DeleteRule(
        self, request: ratelimit_pb2.DeleteRuleRequest, context: Context
    ) -> ratelimit_pb2.DeleteRuleResponse:
        await self._rules.delete(request.tier_id, request.id)
        return ratelimit_pb2.DeleteRuleResponse()
