"""Faults between the gateway and what it depends on, as a client sees them: a service answering
after the gateway's deadline (504 on time for a burst of requests, none queued behind another,
then served again once it is quick), and a Redis the
gateway cannot read revocations from (tokens refused with 503, never guessed; served again once it
is back)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx

from gateway.settings import Settings as GatewaySettings
from meshplate_testing.proxy import TcpProxy

from .conftest import Stack, serve_gateway
from .identity import bearer, log_in, sign_up


async def _until(
    client: httpx.AsyncClient, path: str, status: int, headers: dict[str, str] | None = None
) -> None:
    async with asyncio.timeout(10):
        while (await client.get(path, headers=headers)).status_code != status:
            await asyncio.sleep(0.05)


async def test_a_service_answering_after_the_deadline_is_504_on_time(stack: Stack) -> None:
    async with TcpProxy("127.0.0.1", stack.ports["users"]) as slow_users:
        settings: GatewaySettings = stack.gateway_settings.model_copy(
            update={"users_addr": f"127.0.0.1:{slow_users.port}", "rpc_timeout_s": 0.5}
        )
        async with serve_gateway(settings) as url, stack.client(url) as client:
            await _until(client, "/api/v1/user/root", 200)
            slow_users.delay_s = 2.0
            # A burst: each request ends at its own deadline, none waits behind another.
            late = await asyncio.gather(*(client.get(f"/api/v1/user/nobody{n}") for n in range(50)))
            slow_users.delay_s = 0
            await _until(client, "/api/v1/user/nobody", 404)

    assert {answer.status_code for answer in late} == {504}
    assert late[0].json() == {"detail": "Upstream timed out"}
    # The deadline, not the slow answer, decided when each client heard back.
    assert max(answer.elapsed.total_seconds() for answer in late) < 2.0


async def test_a_gateway_that_cannot_read_revocations_refuses_tokens_with_503(
    stack: Stack,
) -> None:
    redis = urlsplit(stack.gateway_settings.redis_url)
    async with stack.client() as client:
        await sign_up(client, "ann")
        access, _ = await log_in(client, "ann")
    async with TcpProxy(redis.hostname or "127.0.0.1", redis.port or 6379) as cut_off:
        settings: GatewaySettings = stack.gateway_settings.model_copy(
            update={"redis_url": redis._replace(netloc=f"127.0.0.1:{cut_off.port}").geturl()}
        )
        async with serve_gateway(settings) as url, stack.client(url) as client:
            await _until(client, "/api/v1/user/me/", 200, headers=bearer(access))
            await cut_off.cut()
            await _until(client, "/api/v1/user/me/", 503, headers=bearer(access))
            refused = await client.get("/api/v1/user/me/", headers=bearer(access))
            await cut_off.open()
            await _until(client, "/api/v1/user/me/", 200, headers=bearer(access))

    assert refused.status_code == 503
    assert refused.json() == {"detail": "revocation list unavailable"}
