"""Envoy at the edge (deploy/envoy/envoy.yaml, the real binary): validation, request ids, the
access log, the body limit, /metrics kept inside, balancing and retries over several gateways,
and the per-address limit, kept by Envoy itself for each address."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from functools import partial
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509

from meshplate_core.mtls import Tls
from meshplate_core.pki import Authority
from meshplate_core.probe import http_ok
from meshplate_core.probe import main as probe
from meshplate_testing.edge import Edge, envoy_command, local_config, write_config
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port

from .conftest import ENVOY_CONFIG, Stack, serve_gateway


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    program, *_ = envoy_command(path)
    return subprocess.run(
        [program, "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _local(
    gateways: Sequence[int], tls: Tls, edge_limit: tuple[int, int] | None = None
) -> dict[str, object]:
    return local_config(
        ENVOY_CONFIG,
        listen=("127.0.0.1", free_port()),
        admin=("127.0.0.1", free_port()),
        gateways=[("127.0.0.1", port) for port in gateways],
        tls=tls.folder,
        edge_limit=edge_limit,
    )


@pytest.mark.parametrize("local", [False, True], ids=["deployed", "local"])
def test_envoy_validates_the_config(local: bool, workload_tls: Callable[[str], Tls]) -> None:
    folder = workload_tls("envoy").folder
    # The committed file as is, but for its TLS files: they are mounted in a cluster.
    deployed = ENVOY_CONFIG.read_text().replace("/etc/meshplate/tls", str(folder))
    path = write_config(
        _local([8000], workload_tls("envoy")) if local else yaml.safe_load(deployed)
    )
    result = _validate(path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


@contextlib.asynccontextmanager
async def _edge(
    gateways: Sequence[int], tls: Tls, *, edge_limit: tuple[int, int] | None = None
) -> AsyncIterator[Edge]:
    proxy = Edge(_local(gateways, tls, edge_limit))
    await asyncio.to_thread(proxy.start)
    try:
        yield proxy
    finally:
        await asyncio.to_thread(proxy.stop)


async def test_each_request_is_logged_as_json_under_the_id_it_was_given(
    stack: Stack, edge: Edge
) -> None:
    async with stack.client() as client:
        response = await client.get("/api/v1/user/nobody", headers={"User-Agent": "probe/1"})
        # An id of a bad shape is neither logged nor echoed: the gateway's fresh one is.
        bad = await client.get("/api/v1/user/nobody", headers={"X-Request-ID": "<bad id>"})
    request_id, replaced = response.headers["x-request-id"], bad.headers["x-request-id"]
    async with asyncio.timeout(5):
        while not (
            (lines := [x for x in edge.access_log() if x["request_id"] == request_id])
            and [x for x in edge.access_log() if x["request_id"] == replaced]
        ):
            await asyncio.sleep(0.05)

    [line] = lines
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/user/nobody", 404)
    assert line["client"] == "127.0.0.1"
    assert line["user_agent"] == "probe/1"
    assert line["upstream"].startswith("127.0.0.1:")
    assert isinstance(line["duration_ms"], int)
    assert replaced != "<bad id>"
    assert not [x for x in edge.access_log() if "<bad id>" in str(x)]


async def test_bodies_over_one_mebibyte_are_refused_at_the_edge(stack: Stack) -> None:
    async with stack.client() as client:
        too_big = await client.post(
            "/api/v1/user",
            content=b"x" * (1024 * 1024 + 1),
            headers={"content-type": "application/json"},
        )
        fine = await client.post(
            "/api/v1/user", content=b"x" * 1024, headers={"content-type": "application/json"}
        )

    assert too_big.status_code == 413
    assert fine.status_code == 422  # reached the gateway, which says what is wrong with it


async def test_metrics_stay_inside(stack: Stack) -> None:
    async with stack.client() as outside, stack.client(stack.gateway_url) as inside:
        public = [
            (await outside.get(path)).status_code
            for path in ("/metrics", "/%6Detrics", "//metrics", "/api/../metrics")
        ]
        internal = await inside.get("/metrics")

    assert public == [404, 404, 404, 404]
    assert internal.status_code == 200
    assert "http_requests_total" in internal.text


async def test_envoy_serves_its_own_metrics_beside_the_edge(stack: Stack, edge: Edge) -> None:
    async with stack.client() as client:
        answer = await client.get("/health")
    assert edge.stats_url is not None
    async with httpx.AsyncClient(base_url=edge.stats_url) as scraper:
        metrics = await scraper.get("/metrics")
        admin = await scraper.get("/config_dump")

    assert answer.headers["server"] == "meshplate"
    assert metrics.status_code == 200
    assert 'envoy_cluster_upstream_rq_total{envoy_cluster_name="gateway"}' in metrics.text
    assert admin.status_code == 404


async def test_requests_are_spread_over_gateways_and_survive_losing_one(stack: Stack) -> None:
    ports = [free_port(), free_port()]
    settings = stack.gateway_settings
    async with contextlib.AsyncExitStack() as doomed:
        first_url = await doomed.enter_async_context(serve_gateway(settings, port=ports[0]))
        async with (
            serve_gateway(settings, port=ports[1]) as second_url,
            _edge(ports, stack.workload_tls("envoy")) as proxy,
            stack.client(proxy.url) as client,
        ):
            spread = [(await client.get("/health")).status_code for _ in range(20)]
            served = [_served(await _metrics(url)) for url in (first_url, second_url)]
            await doomed.aclose()
            # Reads are retried on the other gateway when the connection fails (and the lost one
            # is out after its second failed connection): none is lost.
            reads = [(await client.get("/health")).status_code for _ in range(20)]
            ejected = await _stat(
                proxy,
                "cluster.gateway.outlier_detection.ejections_enforced_consecutive_local_origin_failure",
            )
            # Health checks take the lost gateway out (two missed, 2 s apart); then writes,
            # which are never retried, all land on the survivor.
            async with asyncio.timeout(15):
                while await _stat(proxy, "cluster.gateway.membership_healthy") != 1:
                    await asyncio.sleep(0.1)
            writes = [
                (await client.post("/api/v1/tasks/task", params={"message": str(n)})).status_code
                for n in range(10)
            ]
            failed = [line for line in proxy.access_log() if line["status"] >= 300]

    assert spread == [200] * 20
    assert all(count > 0 for count in served), served
    assert reads == [200] * 20, failed
    assert ejected == 1  # after its second refused connection, not by luck of the draw
    assert writes == [201] * 10, failed


async def test_the_edge_limits_each_address_on_its_own(stack: Stack) -> None:
    gateway_port = int(stack.gateway_url.rsplit(":", 1)[1])
    async with (
        _edge([gateway_port], stack.workload_tls("envoy"), edge_limit=(5, 60)) as proxy,
        stack.client(proxy.url) as client,
        httpx.AsyncClient(
            base_url=proxy.url, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        ) as neighbour,
    ):
        # A forged X-Forwarded-For changes nothing: the limit is on the TCP peer's address.
        answers = [
            await client.get("/health", headers={"X-Forwarded-For": f"10.0.0.{n}"})
            for n in range(7)
        ]
        # Another address has a budget of its own.
        others = [(await neighbour.get("/health")).status_code for _ in range(5)]

    assert [a.status_code for a in answers] == [200] * 5 + [429] * 2
    assert answers[-1].headers["x-envoy-ratelimited"] == "true"
    assert others == [200] * 5


@pytest.mark.parametrize(("workload", "limited"), [("envoy", True), ("gateway", False)])
async def test_envoy_asks_ratelimit_for_one_count_over_mutual_tls_as_the_envoy_workload(
    stack: Stack, workload: str, limited: bool
) -> None:
    # The ratelimit filter of docs/edge.md, asking a ratelimit whose edge limit is 3 a minute.
    # Shown the gateway's certificate instead of Envoy's, ratelimit refuses to answer, and the
    # filter lets requests through (the local buckets still apply).
    gateway_port = int(stack.gateway_url.rsplit(":", 1)[1])
    async with stack.another_ratelimit(edge_limit=3, edge_period_s=60) as limits:
        proxy = Edge(
            local_config(
                ENVOY_CONFIG,
                listen=("127.0.0.1", free_port()),
                admin=("127.0.0.1", free_port()),
                gateways=[("127.0.0.1", gateway_port)],
                tls=stack.workload_tls(workload).folder,
                ratelimit=[("127.0.0.1", limits)],
                shared_limit=True,
            )
        )
        proxy.start()
        try:
            async with stack.client(proxy.url) as client:
                answers = [(await client.get("/health")).status_code for _ in range(5)]
        finally:
            proxy.stop()

    assert answers == ([200] * 3 + [429] * 2 if limited else [200] * 5)


async def _stat(proxy: Edge, name: str) -> int:
    async with httpx.AsyncClient(base_url=proxy.admin_url) as admin:
        answer = await admin.get("/stats", params={"filter": f"^{name}$"})
    [line] = answer.text.splitlines()
    return int(line.split(": ")[1])


async def _metrics(url: str) -> str:
    async with httpx.AsyncClient(base_url=url) as client:
        return (await client.get("/metrics")).text


def _served(metrics: str) -> float:
    prefix = 'http_requests_total{method="GET",route="/health",status="200"} '
    return sum(
        float(line.removeprefix(prefix)) for line in metrics.splitlines() if line.startswith(prefix)
    )


async def test_gateways_restarted_one_by_one_with_sigterm_fail_no_request(stack: Stack) -> None:
    # A rolling restart of two gateway processes behind Envoy, reads and writes running.
    async with contextlib.AsyncExitStack() as exits:
        await _rolling_restart(stack, exits)


async def _rolling_restart(stack: Stack, exits: contextlib.AsyncExitStack) -> None:
    ports = [free_port(), free_port()]
    settings = stack.gateway_settings

    limits = await exits.enter_async_context(stack.another_ratelimit(default_limit=1_000_000))

    def gateway(port: int) -> ServiceProcess:
        return ServiceProcess(
            "gateway",
            env={
                "GATEWAY_PORT": str(port),
                "GATEWAY_AUTH_ADDR": settings.auth_addr,
                "GATEWAY_USERS_ADDR": settings.users_addr,
                "GATEWAY_RATELIMIT_ADDR": f"127.0.0.1:{limits}",
                "GATEWAY_REDIS_URL": settings.redis_url,
                "GATEWAY_TRUSTED_PROXIES": '["127.0.0.1/32"]',
                "GATEWAY_SHUTDOWN_DRAIN_S": "5",
                "TLS_DIR": str(stack.workload_tls("gateway").folder),
                "LOG_LEVEL": "WARNING",
            },
        )

    async def serving(process: ServiceProcess, port: int) -> None:
        await process.start()
        await process.wait_until(partial(http_ok, f"http://127.0.0.1:{port}/health"), timeout_s=30)

    running = [gateway(port) for port in ports]
    statuses: collections.Counter[int] = collections.Counter()
    stop = asyncio.Event()
    try:
        for process, port in zip(running, ports, strict=True):
            await serving(process, port)
        async with (
            _edge(ports, stack.workload_tls("envoy"), edge_limit=(1_000_000, 60)) as proxy,
            stack.client(proxy.url) as client,
        ):

            async def traffic() -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    read = await client.get("/api/v1/user/root")
                    write = await client.post("/api/v1/tasks/task", params={"message": str(n)})
                    statuses.update([read.status_code, write.status_code])

            load = asyncio.gather(traffic(), traffic())
            for index, port in enumerate(ports):
                await asyncio.sleep(1)
                assert await running[index].terminate(timeout_s=20) == 0
                running[index] = gateway(port)
                await serving(running[index], port)
            await asyncio.sleep(1)
            stop.set()
            await load
            failed = [line for line in proxy.access_log() if line["status"] >= 300]
    finally:
        stop.set()
        for process in running:
            await process.terminate(timeout_s=20)

    failed = [
        {k: line.get(k) for k in ("status", "method", "path", "flags", "upstream", "attempts")}
        for line in failed
    ]
    assert set(statuses) == {200, 201}, (statuses, failed[:5])
    assert statuses[201] > 20


def _served_serial(port: int, tls: Tls) -> int:
    """The serial number of the certificate a new connection to the gateway on `port` is shown."""
    context = tls.http_client_context()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="gateway") as wrapped,
    ):
        der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


async def test_envoy_reaches_a_gateway_serving_https_with_mutual_tls(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in Kubernetes and compose: GATEWAY_HTTPS, Envoy's gateway cluster over mutual TLS.
    envoy = stack.workload_tls("envoy")
    # The gateway's own folder, from the session's CA, so the test can renew it.
    authority = Authority.load(envoy.folder.parent / "ca")
    gateway = Tls(authority.issue("gateway").save(tmp_path / "gateway"))
    settings = stack.gateway_settings
    port = free_port()
    process = ServiceProcess(
        "gateway",
        env={
            "GATEWAY_PORT": str(port),
            "GATEWAY_AUTH_ADDR": settings.auth_addr,
            "GATEWAY_USERS_ADDR": settings.users_addr,
            "GATEWAY_RATELIMIT_ADDR": settings.ratelimit_addr,
            "GATEWAY_REDIS_URL": settings.redis_url,
            "GATEWAY_TRUSTED_PROXIES": '["127.0.0.1/32"]',
            "GATEWAY_HTTPS": "true",
            "TLS_DIR": str(gateway.folder),
            "LOG_LEVEL": "WARNING",
        },
    )
    await process.start()
    try:
        await process.wait_until(
            partial(http_ok, f"https://127.0.0.1:{port}/health", gateway), timeout_s=30
        )
        # The pod's probe: its own certificate, from its settings.
        monkeypatch.setenv("TLS_DIR", str(gateway.folder))
        probed = await asyncio.to_thread(probe, ["http", f"https://127.0.0.1:{port}/health"])
        proxy = Edge(
            local_config(
                ENVOY_CONFIG,
                listen=("127.0.0.1", free_port()),
                admin=("127.0.0.1", free_port()),
                gateways=[("127.0.0.1", port)],
                tls=envoy.folder,
                gateway_https=True,
            )
        )
        proxy.start()
        try:
            async with stack.client(proxy.url) as client:
                through_envoy = (await client.get("/health/ready")).status_code
                signed_up = await client.post(
                    "/api/v1/user",
                    json={
                        "name": "Ann",
                        "username": "ann",
                        "email": "ann@example.com",
                        "password": "correct horse",
                    },
                )
        finally:
            proxy.stop()
        async with httpx.AsyncClient(timeout=5) as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://127.0.0.1:{port}/health")
        async with httpx.AsyncClient(timeout=5, verify=False) as anonymous:
            with pytest.raises(httpx.TransportError):
                await anonymous.get(f"https://127.0.0.1:{port}/health")
        before = await asyncio.to_thread(_served_serial, port, gateway)
        authority.issue("gateway").save(gateway.folder)
        after = await asyncio.to_thread(_served_serial, port, gateway)
    finally:
        await process.terminate(timeout_s=20)

    assert (probed, through_envoy, signed_up.status_code) == (0, 200, 201)
    assert before != after
    assert (
        after
        == x509.load_pem_x509_certificate((gateway.folder / "tls.crt").read_bytes()).serial_number
    )
