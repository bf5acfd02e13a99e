"""Hosts that fail apart: auth, users and ratelimit each in a network namespace of its own, with an
address of its own (meshplate_testing.netns), the gateway in the root namespace; under light
traffic users is cut off (its link drops every packet both ways: no reset, no clean close). Every
request answers within the gateway's deadlines, those that need users with 503 or 504, the
gateway's readiness names users, and once the link is back everything answers 200 again within
10 s."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.settings import Settings as GatewaySettings
from meshplate_core.mtls import Tls
from meshplate_core.probe import grpc_serving, http_ok
from meshplate_testing.netns import Forwarder, Host, Network, unavailable
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port

from .conftest import SERVICE_NAMES
from .identity import ADMIN, PASSWORD, bearer, log_in, sign_up

log = logging.getLogger(__name__)

# The gateway's own defaults: each call's deadline, and each readiness check's.
DEADLINE_S: float = GatewaySettings.model_fields["rpc_timeout_s"].default
HEALTH_TIMEOUT_S: float = GatewaySettings.model_fields["health_timeout_s"].default
# Above a deadline, for the HTTP hop, the rate-limit check and a loaded machine.
MARGIN_S = 1.0
# How long users stays cut off: the calls the cut caught reach their deadline, and the gateway,
# its connection found dead, answers the next ones at once. Then how soon after the link is back
# every request must succeed.
CUT_S = DEADLINE_S + 3.0
RECOVERY_S = 10.0
WARM_S = 1.5
GRPC_PORTS = {"auth": 50051, "users": 50052, "ratelimit": 50053}
USERNAME = "parted"


@dataclass(frozen=True)
class Route:
    """A request of the traffic: the longest it may take (the deadlines of the calls it makes one
    after the other, and a margin), its answer when all is well, whether it needs users (else the
    gateway's read model may answer it while users is cut off), and its body."""

    method: str
    path: str
    budget_s: float
    ok: int = 200
    needs_users: bool = True
    json: dict[str, str] | None = None
    form: dict[str, str] | None = None


ROUTES = {
    "me": Route("GET", "/api/v1/user/me/", DEADLINE_S + MARGIN_S, needs_users=False),
    "posts": Route("GET", f"/api/v1/{USERNAME}/posts", DEADLINE_S + MARGIN_S, needs_users=False),
    "users": Route("GET", "/api/v1/users", DEADLINE_S + MARGIN_S),
    # The author by username (maybe a copy), then the write.
    "post": Route(
        "POST",
        f"/api/v1/{USERNAME}/post",
        2 * DEADLINE_S + MARGIN_S,
        ok=201,
        json={"title": "Parted", "text": "Written while users may be cut off."},
    ),
    # auth, which asks users (from one namespace to another) within the time left.
    "login": Route(
        "POST",
        "/api/v1/login",
        DEADLINE_S + MARGIN_S,
        form={"username": USERNAME, "password": PASSWORD},
    ),
    # Every service's health at once, each with a deadline of its own.
    "ready": Route("GET", "/health/ready", HEALTH_TIMEOUT_S + MARGIN_S),
}


@dataclass(frozen=True)
class Answer:
    """One request: when it started (the loop's clock), how long it took, what it answered."""

    what: str
    started: float
    elapsed: float
    status: int
    body: Any = None

    @property
    def ended(self) -> float:
        return self.started + self.elapsed


@dataclass
class Traffic:
    """One loop per route, for the block of `async with`."""

    client: httpx.AsyncClient
    headers: dict[str, str]
    answers: list[Answer] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    running: list[asyncio.Task[None]] = field(default_factory=list)

    async def __aenter__(self) -> Traffic:
        self.running = [asyncio.create_task(self._run(what)) for what in ROUTES]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop the loops and wait for the requests in flight."""
        self.stop.set()
        await asyncio.gather(*self.running)

    async def _ask(self, what: str) -> httpx.Response:
        route = ROUTES[what]
        return await self.client.request(
            route.method, route.path, headers=self.headers, json=route.json, data=route.form
        )

    async def _run(self, what: str) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            started = loop.time()
            try:
                answer = await self._ask(what)
                status, body = answer.status_code, answer.json()
            except httpx.TimeoutException:
                status, body = 0, None
            self.answers.append(Answer(what, started, loop.time() - started, status, body))
            await asyncio.sleep(0.05)

    def of(self, what: str, keep: Callable[[Answer], bool] = lambda _: True) -> list[Answer]:
        return [answer for answer in self.answers if answer.what == what and keep(answer)]

    def good(self, answer: Answer) -> bool:
        return answer.status == ROUTES[answer.what].ok

    def recovered_s(self, what: str, since: float) -> float | None:
        """Seconds from `since` to the end of the first request of `what` from which every one
        started later succeeded (None if the last did not)."""
        after = self.of(what, lambda answer: answer.started >= since)
        first = None
        for answer in after:
            first = (first or answer) if self.good(answer) else None
        return None if first is None else first.ended - since


@pytest.fixture
def network() -> Iterator[Network]:
    if (reason := unavailable()) is not None:
        pytest.skip(reason)
    with Network() as network:
        yield network


def _loopback_port(url: str) -> int:
    """The port of a server on 127.0.0.1 (where the hosts' forwarders lead)."""
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        pytest.skip(
            f"the hosts reach PostgreSQL and Redis on 127.0.0.1:<port> only, not {parts.hostname}"
        )
    return parts.port


def _service(
    host: Host, addresses: dict[str, str], database_url: str, redis_url: str, tls: Tls
) -> ServiceProcess:
    prefix = host.name.upper()
    own = {
        "auth": {"AUTH_USERS_ADDR": addresses["users"]},
        "users": {
            "USERS_AUTH_ADDR": addresses["auth"],
            "USERS_ARGON2_TIME_COST": "1",
            "ADMIN_USERNAME": ADMIN[0],
            "ADMIN_PASSWORD": ADMIN[1],
            "ADMIN_EMAIL": "root@example.com",
        },
        "ratelimit": {
            "DEFAULT_RATE_LIMIT_LIMIT": "1000000",
            "RATELIMIT_LOGIN_ATTEMPT_LIMIT": "1000000",
        },
    }
    return host.process(
        host.name,
        env={
            **own[host.name],
            f"{prefix}_GRPC_HOST": host.address,
            f"{prefix}_GRPC_PORT": str(GRPC_PORTS[host.name]),
            f"{prefix}_DATABASE_URL": database_url,
            f"{prefix}_MIGRATE_ON_START": "false",
            # A stop while a peer is cut off must not wait out the default grace.
            f"{prefix}_SHUTDOWN_GRACE_S": "2",
            "REDIS_URL": redis_url,
            "TLS_DIR": str(tls.folder),
            "LOG_LEVEL": "WARNING",
        },
    )


@contextlib.asynccontextmanager
async def _parted(
    network: Network,
    database_urls: dict[str, str],
    redis_url: str,
    workload_tls: Callable[[str], Tls],
) -> AsyncIterator[tuple[dict[str, Host], str]]:
    """auth, users and ratelimit each on a host of its own (reaching PostgreSQL and Redis
    through a forwarder), a gateway process in the root namespace; its hosts and its URL."""
    hosts = {name: network.add(name) for name in GRPC_PORTS}
    addresses = {name: f"{host.address}:{GRPC_PORTS[name]}" for name, host in hosts.items()}
    loopback = [_loopback_port(redis_url), *{_loopback_port(url) for url in database_urls.values()}]
    gateway_port = free_port()
    gateway = ServiceProcess(
        "gateway",
        env={
            "GATEWAY_PORT": str(gateway_port),
            **{f"GATEWAY_{name.upper()}_ADDR": address for name, address in addresses.items()},
            "GATEWAY_REDIS_URL": redis_url,
            "GATEWAY_RPC_TIMEOUT_S": str(DEADLINE_S),
            "GATEWAY_HEALTH_TIMEOUT_S": str(HEALTH_TIMEOUT_S),
            "TLS_DIR": str(workload_tls("gateway").folder),
            "LOG_LEVEL": "WARNING",
        },
    )
    started: list[ServiceProcess] = []

    async def start(name: str) -> None:
        tls = workload_tls(name)
        process = _service(hosts[name], addresses, database_urls[name], redis_url, tls)
        await process.start()
        started.append(process)
        serving = partial(grpc_serving, addresses[name], SERVICE_NAMES[name], tls)
        await process.wait_until(serving, timeout_s=30)

    async with contextlib.AsyncExitStack() as exits:
        for host in hosts.values():
            await exits.enter_async_context(Forwarder(host.namespace, loopback))
        try:
            # users first: auth's start reaches it.
            await asyncio.gather(start("users"), start("ratelimit"))
            await start("auth")
            await gateway.start()
            started.append(gateway)
            url = f"http://127.0.0.1:{gateway_port}"
            await gateway.wait_until(partial(http_ok, f"{url}/health/ready"), timeout_s=30)
            yield hosts, url
        finally:
            await asyncio.gather(
                *(process.terminate(timeout_s=10) for process in started), return_exceptions=True
            )


async def test_a_service_cut_off_is_503_or_504_on_time_named_by_readiness_and_back_within_10_s(
    network: Network,
    stack_database_urls: dict[str, str],
    flushed_redis: str,
    workload_tls: Callable[[str], Tls],
) -> None:
    async with (
        _parted(network, stack_database_urls, flushed_redis, workload_tls) as (hosts, url),
        httpx.AsyncClient(base_url=url, timeout=3 * DEADLINE_S) as client,
    ):
        await sign_up(client, USERNAME)
        loop = asyncio.get_running_loop()
        async with Traffic(client, bearer((await log_in(client, USERNAME))[0])) as traffic:
            await asyncio.sleep(WARM_S)

            cutting_at = loop.time()
            await asyncio.to_thread(hosts["users"].cut)
            # Requests started from here on meet the cut on both ends of the link.
            cut_at = loop.time()
            await asyncio.sleep(CUT_S)
            mend_at = loop.time()
            await asyncio.to_thread(hosts["users"].mend)
            # Until every route has answered well for a second, or well past the 10 s.
            while loop.time() - mend_at < RECOVERY_S + 2 * DEADLINE_S and any(
                (recovered := traffic.recovered_s(what, mend_at)) is None
                or loop.time() - mend_at - recovered < 1.0
                for what in ROUTES
            ):
                await asyncio.sleep(0.1)

    def within_cut(answer: Answer) -> bool:
        return cut_at <= answer.started and answer.ended < mend_at

    latencies = {
        what: round(max(a.elapsed for a in traffic.of(what, lambda a: a.ended > cut_at)), 3)
        for what in ROUTES
    }
    recoveries = {what: traffic.recovered_s(what, mend_at) for what in ROUTES}
    log.info("slowest answer since the cut (s): %s", latencies)
    log.info("back after the link (s): %s", recoveries)
    log.info(
        "answers started while cut: %s",
        collections.Counter(
            f"{a.what} {a.status}" for a in traffic.answers if cut_at <= a.started < mend_at
        ),
    )
    log.info(
        "readiness while cut: %s", {str(a.body["checks"]) for a in traffic.of("ready", within_cut)}
    )
    log.debug("answers: %s", [(a.what, a.status, round(a.elapsed, 2)) for a in traffic.answers])

    before = [answer for answer in traffic.answers if answer.ended < cutting_at]
    assert before
    assert all(traffic.good(answer) for answer in before), before
    for what, route in ROUTES.items():
        cut_off = traffic.of(what, within_cut)
        assert cut_off, what
        expected = {503, 504} if route.needs_users else {route.ok, 503, 504}
        assert {answer.status for answer in cut_off} <= expected, (what, cut_off)
        assert {answer.status for answer in traffic.of(what)} <= {route.ok, 503, 504}, what
        assert all(answer.elapsed <= route.budget_s for answer in traffic.of(what)), what
    for answer in traffic.of("ready", within_cut):
        checks = answer.body["checks"]
        assert checks["users"] != "ok", answer
        assert all(result == "ok" for name, result in checks.items() if name != "users"), answer
    assert all(seconds is not None and seconds < RECOVERY_S for seconds in recoveries.values()), (
        recoveries
    )
