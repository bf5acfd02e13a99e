"""Calls to the ratelimit service: decisions and rules."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from opentelemetry import trace

from gateway.schemas import RateLimitCreate, RateLimitRead, RateLimitUpdate
from meshplate.ratelimit.v1 import ratelimit_pb2, ratelimit_pb2_grpc
from meshplate_core.batching import Batcher
from meshplate_core.channels import Caller
from meshplate_core.tracing import recording, span

# Checks per CheckLimits call, at most (the contract allows 1000).
MAX_BATCH = 500
_BATCH_SPAN = "meshplate.ratelimit.v1.RateLimitService/CheckLimits"
# A check waiting for its batch, with the span it belongs to when traced.
Pending = tuple[ratelimit_pb2.CheckLimitRequest, trace.SpanContext | None]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rate-limit decision, as headers will tell it."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int


_ALGORITHMS: dict[str, ratelimit_pb2.Algorithm.ValueType] = {
    "sliding_window": ratelimit_pb2.ALGORITHM_SLIDING_WINDOW,
    "fixed_window": ratelimit_pb2.ALGORITHM_FIXED_WINDOW,
}


def to_rule_read(rule: ratelimit_pb2.Rule) -> RateLimitRead:
    """The REST view of a rule."""
    fixed = rule.algorithm == ratelimit_pb2.ALGORITHM_FIXED_WINDOW
    return RateLimitRead(
        id=rule.id,
        tier_id=rule.tier_id,
        name=rule.name,
        path=rule.path,
        limit=rule.limit,
        period=rule.period_s,
        algorithm="fixed_window" if fixed else "sliding_window",
    )


class RateLimitClient:
    """Calls to the ratelimit service.

    Decisions are batched: the checks of requests that arrive while a CheckLimits call is in
    flight travel together in the next one (at most `batch_in_flight` calls outstanding), so
    under load one hop serves many requests. A failed call fails each check it carried.

    Traced, each request's check is a span of its own trace (`ratelimit.check`), and the batch's
    call is a span linked to each of those: the OpenTelemetry way to trace work done for many.
    """

    def __init__(
        self, channel: grpc.aio.Channel, *, timeout_s: float, batch_in_flight: int = 2
    ) -> None:
        self._stub = ratelimit_pb2_grpc.RateLimitServiceStub(channel)
        self._call = Caller(timeout_s=timeout_s)
        self._batcher: Batcher[Pending, Verdict] = Batcher(
            self._check_many, max_batch=MAX_BATCH, in_flight=batch_in_flight
        )

    async def check(
        self, subject: str, tier_id: int | None, path: str, *, hits: int = 1
    ) -> Verdict:
        """Count `hits` requests of `subject` on `path`."""
        request = ratelimit_pb2.CheckLimitRequest(subject=subject, path=path, hits=hits)
        if tier_id is not None:
            request.tier_id = tier_id
        if not recording():
            return await self._batcher.submit((request, None))
        with span("ratelimit.check", attributes={"ratelimit.subject": subject}) as current:
            return await self._batcher.submit((request, current.get_span_context()))

    async def give_back(self, subject: str, path: str, *, hits: int = 1) -> None:
        """Give back `hits` counted requests of `subject` on `path` (a successful login's)."""
        await self._call(
            self._stub.ReturnHits,
            ratelimit_pb2.ReturnHitsRequest(subject=subject, path=path, hits=hits),
        )

    async def _check_many(self, pending: Sequence[Pending]) -> list[Verdict]:
        batch = ratelimit_pb2.CheckLimitsRequest(checks=[request for request, _ in pending])
        links = [trace.Link(context) for _, context in pending if context is not None]
        # The batch runs in an empty context (meshplate_core.batching): untraced, its call
        # carries no request's id or trace; traced, the trace of its own span.
        traced = (
            span(_BATCH_SPAN, kind=trace.SpanKind.CLIENT, links=links)
            if links
            else contextlib.nullcontext()
        )
        with traced:
            reply = await self._call(self._stub.CheckLimits, batch)
        return [
            Verdict(
                allowed=result.allowed,
                limit=result.limit,
                remaining=result.remaining,
                reset_s=result.reset_s,
                retry_after_s=result.retry_after_s,
            )
            for result in reply.results
        ]

    async def create_rule(self, tier_id: int, body: RateLimitCreate) -> RateLimitRead:
        """A new rule for a tier."""
        reply = await self._call(
            self._stub.CreateRule,
            ratelimit_pb2.CreateRuleRequest(
                tier_id=tier_id,
                path=body.path,
                limit=body.limit,
                period_s=body.period,
                name=body.name or "",
                algorithm=_ALGORITHMS[body.algorithm or "sliding_window"],
            ),
        )
        return to_rule_read(reply.rule)

    async def get_rule(self, tier_id: int, rule_id: int) -> RateLimitRead:
        """One rule of a tier."""
        reply = await self._call(
            self._stub.GetRule, ratelimit_pb2.GetRuleRequest(tier_id=tier_id, id=rule_id)
        )
        return to_rule_read(reply.rule)

    async def list_rules(
        self, tier_id: int, page: int, size: int
    ) -> tuple[list[RateLimitRead], int]:
        """One page of a tier's rules and the total."""
        reply = await self._call(
            self._stub.ListRules,
            ratelimit_pb2.ListRulesRequest(tier_id=tier_id, page=page, items_per_page=size),
        )
        return [to_rule_read(r) for r in reply.rules], reply.total_count

    async def all_rules(self, tier_id: int) -> list[RateLimitRead]:
        """Every rule of a tier."""
        rules: list[RateLimitRead] = []
        page = 1
        while True:
            batch, total = await self.list_rules(tier_id, page, 100)
            rules.extend(batch)
            if not batch or len(rules) >= total:
                return rules
            page += 1

    async def update_rule(self, tier_id: int, rule_id: int, body: RateLimitUpdate) -> None:
        """Change the fields the body sets."""
        request = ratelimit_pb2.UpdateRuleRequest(tier_id=tier_id, id=rule_id)
        if body.path is not None:
            request.path = body.path
        if body.limit is not None:
            request.limit = body.limit
        if body.period is not None:
            request.period_s = body.period
        if body.name is not None:
            request.name = body.name
        if body.algorithm is not None:
            request.algorithm = _ALGORITHMS[body.algorithm]
        await self._call(self._stub.UpdateRule, request)

    async def delete_rule(self, tier_id: int, rule_id: int) -> None:
        """Remove a rule."""
        await self._call(
            self._stub.DeleteRule, ratelimit_pb2.DeleteRuleRequest(tier_id=tier_id, id=rule_id)
        )
