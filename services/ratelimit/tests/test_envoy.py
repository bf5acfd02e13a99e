"""Envoy's ShouldRateLimit, called the way Envoy's ratelimit filter calls it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from envoy_rls import rls_pb2
from ratelimit.settings import Settings

METHOD = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
Response = rls_pb2.RateLimitResponse


def _descriptor(**entries: str) -> bytes:
    message = rls_pb2.RateLimitDescriptor(
        entries=[rls_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries.items()]
    )
    # Envoy may also send a limit override (field 2: requests_per_unit 5, unit MINUTE), which the
    # trimmed copy does not declare: it must be skipped, not break parsing.
    return message.SerializeToString() + b"\x12\x04\x08\x05\x10\x02"


def _request(domain: str, *descriptors: bytes, hits: int = 0) -> bytes:
    body = rls_pb2.RateLimitRequest(domain=domain, hits_addend=hits).SerializeToString()
    for descriptor in descriptors:
        body += b"\x12" + bytes([len(descriptor)]) + descriptor
    return body


async def _call(start_server: Callable[..., Any], payload: bytes, **overrides: Any) -> Response:
    channel: grpc.aio.Channel = await start_server(**overrides)
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    return Response.FromString(await call(payload, timeout=5))


async def test_remote_address_gets_the_edge_limit_and_goes_over_it(
    start_server: Callable[..., Any], settings: Settings
) -> None:
    channel: grpc.aio.Channel = await start_server(edge_limit=2, edge_period_s=60)
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
    payload = _request("meshplate", _descriptor(remote_address="203.0.113.7"))

    answers = [Response.FromString(await call(payload, timeout=5)) for _ in range(3)]

    assert [a.overall_code for a in answers] == [Response.OK, Response.OK, Response.OVER_LIMIT]
    first = answers[0].statuses[0]
    assert (first.current_limit.requests_per_unit, first.current_limit.unit) == (
        2,
        Response.RateLimit.MINUTE,
    )
    assert first.limit_remaining == 1
    assert 0 < first.duration_until_reset.seconds <= 60


async def test_user_and_path_use_the_gateways_rules(start_server: Callable[..., Any]) -> None:
    answer = await _call(
        start_server, _request("meshplate", _descriptor(user_id="7", path="/api/v1/users"))
    )

    assert answer.overall_code == Response.OK
    assert answer.statuses[0].current_limit.requests_per_unit == 10


async def test_other_domains_and_descriptors_are_not_limited(
    start_server: Callable[..., Any],
) -> None:
    other_domain = await _call(
        start_server, _request("other", _descriptor(remote_address="203.0.113.7"))
    )
    unknown = await _call(start_server, _request("meshplate", _descriptor(header="x")))

    assert other_domain.overall_code == unknown.overall_code == Response.OK
    assert len(unknown.statuses) == 1


async def test_one_descriptor_over_the_limit_makes_the_request_over(
    start_server: Callable[..., Any],
) -> None:
    payload = _request(
        "meshplate",
        _descriptor(header="x"),
        _descriptor(remote_address="203.0.113.9"),
        hits=5,
    )

    answer = await _call(start_server, payload, edge_limit=3)

    assert answer.overall_code == Response.OVER_LIMIT
    assert [s.code for s in answer.statuses] == [Response.OK, Response.OVER_LIMIT]
