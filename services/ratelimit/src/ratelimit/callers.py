"""Who may call which RPC of ratelimit (meshplate_core.callers): the gateway for its checks and
the rules API, Envoy for its edge limit (the rate-limit service API of its filter). Anyone else
is refused."""

from __future__ import annotations

from envoy_rls import rls_pb2
from meshplate.ratelimit.v1 import ratelimit_pb2
from meshplate_core.callers import Callers

GATEWAY, ENVOY = "gateway", "envoy"


def callers() -> list[Callers]:
    """ratelimit's tables: its own service and Envoy's."""
    return [
        Callers.of(
            ratelimit_pb2.DESCRIPTOR.services_by_name["RateLimitService"],
            {
                "CheckLimit": {GATEWAY},
                "CheckLimits": {GATEWAY},
                "ReturnHits": {GATEWAY},
                "CreateRule": {GATEWAY},
                "GetRule": {GATEWAY},
                "ListRules": {GATEWAY},
                "UpdateRule": {GATEWAY},
                "DeleteRule": {GATEWAY},
            },
        ),
        Callers.of(
            rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"], {"ShouldRateLimit": {ENVOY}}
        ),
    ]
