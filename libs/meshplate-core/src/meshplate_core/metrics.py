"""Prometheus metrics: one registry per process (never the library's global one), the request
instruments every process has, counters read from the domain's own tallies, and `/metrics` for
the processes that have no HTTP server of their own (the gRPC services).

Domain code keeps plain tallies (dataclasses of ints: the limiter's decisions, the cache's hits);
`export_tallies` turns one into a counter family read at scrape time, so the domain never
imports a metrics library.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# Seconds: from a cached read (~1 ms) to a deadline (5-15 s).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RpcMetrics:
    """Served RPCs: how many, with which status, how long (per service and method)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed, by status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time to complete an RPC.",
            ["grpc_service", "grpc_method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.denied = Counter(
            "grpc_server_denied_total",
            "RPCs refused because the caller may not call them (PERMISSION_DENIED), by caller.",
            ["grpc_service", "grpc_method", "caller"],
            registry=registry,
        )
        # The labelled children, looked up once per (method, code): labels() costs more than
        # the observation itself.
        self._children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe(self, full_method: str, code: str, seconds: float) -> None:
        """One completed RPC (`full_method` as gRPC names it: `/package.Service/Method`)."""
        children = self._children.get((full_method, code))
        if children is None:
            service, _, method = full_method.lstrip("/").partition("/")
            children = (
                self.handled.labels(service, method, code),
                self.seconds.labels(service, method),
            )
            self._children[(full_method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def refuse(self, full_method: str, caller: str) -> None:
        """One call refused to `caller`, who may not call `full_method`."""
        service, _, method = full_method.lstrip("/").partition("/")
        self.denied.labels(service, method, caller).inc()


class HttpMetrics:
    """Served HTTP requests: how many, with which status, how long (per route template)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered request."""
        children = self._children.get((method, route, status))
        if children is None:
            children = (
                self.requests.labels(method, route, str(status)),
                self.seconds.labels(method, route),
            )
            self._children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)


class _Family(Collector):
    def __init__(
        self,
        family: type[CounterMetricFamily] | type[GaugeMetricFamily],
        name: str,
        documentation: str,
        labels: list[str],
        read: Callable[[], Mapping[tuple[str, ...], float]],
    ) -> None:
        self._family = family
        self._name = name
        self._documentation = documentation
        self._labels = labels
        self._read = read

    def collect(self) -> Iterable[Any]:
        family = self._family(self._name, self._documentation, labels=self._labels)
        for values, amount in self._read().items():
            family.add_metric(list(values), amount)
        yield family


def export_counters(
    registry: CollectorRegistry,
    name: str,
    documentation: str,
    *,
    labels: list[str],
    read: Callable[[], Mapping[tuple[str, ...], float]],
) -> None:
    """A counter family (`<name>_total`) whose samples `read` returns at each scrape
    ({label values: count})."""
    registry.register(_Family(CounterMetricFamily, name, documentation, labels, read))


def export_gauges(
    registry: CollectorRegistry,
    name: str,
    documentation: str,
    *,
    labels: list[str],
    read: Callable[[], Mapping[tuple[str, ...], float]],
) -> None:
    """A gauge family whose samples `read` returns at each scrape ({label values: value})."""
    registry.register(_Family(GaugeMetricFamily, name, documentation, labels, read))


def export_tallies(
    registry: CollectorRegistry, name: str, documentation: str, *, label: str, tallies: Any
) -> None:
    """Export every int field of the dataclass `tallies` as `<name>_total{<label>="<field>"}`,
    read at each scrape."""

    def read() -> dict[tuple[str, ...], float]:
        return {
            (field.name,): float(getattr(tallies, field.name))
            for field in dataclasses.fields(tallies)
            if isinstance(getattr(tallies, field.name), int)
        }

    export_counters(registry, name, documentation, labels=[label], read=read)


# prometheus_client's own setting: where processes serving one port keep their samples.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_by_processes() -> Iterator[None]:
    """While the block runs, processes started from it keep their samples in one folder, so
    a scrape of any of them reports them all (prometheus_client's multiprocess mode)."""
    if os.environ.get(MULTIPROCESS_DIR):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="meshplate-metrics-") as folder:
        os.environ[MULTIPROCESS_DIR] = folder
        try:
            yield
        finally:
            del os.environ[MULTIPROCESS_DIR]


def scraped(registry: CollectorRegistry) -> CollectorRegistry:
    """What a scrape reports: `registry`, or, in processes that share their samples, every
    process's samples."""
    if not os.environ.get(MULTIPROCESS_DIR):
        return registry
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]  # unannotated upstream
    return combined


@contextmanager
def exposed(registry: CollectorRegistry, *, host: str, port: int) -> Iterator[int]:
    """Serve `registry` at http://host:port/metrics (a thread) while the block runs; yields the
    port (0 picks a free one)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
