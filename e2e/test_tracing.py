"""Trace context from Envoy through the gateway into every gRPC call and into the jobs it
enqueues (spans recorded in memory for the in-process stack; the worker, a real process, logs
its trace id)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as redis
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from meshplate_core.events import SampleTaskRequested
from meshplate_testing.edge import Edge
from meshplate_testing.processes import ServiceProcess
from meshplate_testing.servers import free_port

from .conftest import Stack
from .identity import sign_up

_PROVIDER = TracerProvider()
_EXPORTER = InMemorySpanExporter()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans recorded by this test process (the stack's gateway and services)."""
    # The global provider can be set once per process: the first test here sets it.
    if trace.get_tracer_provider() is not _PROVIDER:
        trace.set_tracer_provider(_PROVIDER)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def _hex(number: int, width: int) -> str:
    return format(number, f"0{width}x")


async def _access_line(edge: Edge, request_id: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            for line in edge.access_log():
                if line["request_id"] == request_id:
                    return line
            await asyncio.sleep(0.05)


def _named(spans: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in spans.get_finished_spans() if s.name.startswith(prefix)]


async def test_envoy_starts_the_trace_the_gateway_and_every_service_continue(
    stack: Stack, edge: Edge, spans: InMemorySpanExporter
) -> None:
    async with stack.client() as client:
        await sign_up(client, "ann")
        spans.clear()
        response = await client.get("/api/v1/user/ann")
    line = await _access_line(edge, response.headers["x-request-id"])
    _version, trace_id, envoy_span, _flags = line["traceparent"].split("-")

    [gateway] = _named(spans, "GET /api/v1/user/{username}")
    [users] = _named(spans, "meshplate.users.v1.UsersService/GetUser")
    [check] = _named(spans, "ratelimit.check")
    assert gateway.context is not None
    assert gateway.parent is not None
    assert (_hex(gateway.context.trace_id, 32), _hex(gateway.parent.span_id, 16)) == (
        trace_id,
        envoy_span,
    )
    for child in (users, check):
        assert child.context is not None
        assert child.context.trace_id == gateway.context.trace_id
        assert gateway.context.span_id in _ancestors(child, spans)
    assert users.kind is trace.SpanKind.SERVER
    # The decision was made in a batch: its call links to the check of every request it carried.
    [batch] = _batch_calls(spans, check)
    [ratelimit] = [
        s
        for s in _named(spans, "meshplate.ratelimit.v1.RateLimitService/CheckLimits")
        if s.kind is trace.SpanKind.SERVER
    ]
    assert batch.context is not None
    assert batch.context.span_id in _ancestors(ratelimit, spans)


def _batch_calls(spans: InMemorySpanExporter, check: ReadableSpan) -> list[ReadableSpan]:
    """The batched calls whose links name `check`."""
    assert check.context is not None
    return [
        s
        for s in _named(spans, "meshplate.ratelimit.v1.RateLimitService/CheckLimits")
        if s.kind is trace.SpanKind.CLIENT
        and any(link.context.span_id == check.context.span_id for link in s.links)
    ]


def _ancestors(span: ReadableSpan, spans: InMemorySpanExporter) -> list[int]:
    by_id = {s.context.span_id: s for s in spans.get_finished_spans() if s.context is not None}
    chain = []
    while span.parent is not None:
        chain.append(span.parent.span_id)
        if span.parent.span_id not in by_id:
            break
        span = by_id[span.parent.span_id]
    return chain


async def test_a_clients_trace_is_continued_and_probes_are_not_traced(
    stack: Stack, spans: InMemorySpanExporter
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    async with stack.client() as client:
        await client.get("/api/v1/user/nobody", headers=traceparent)
        await client.get("/health", headers=traceparent)

    [gateway] = _named(spans, "GET /api/v1/user/{username}")
    assert gateway.context is not None
    assert _hex(gateway.context.trace_id, 32) == trace_id
    assert _named(spans, "GET /health") == []


async def test_an_enqueued_job_runs_in_the_trace_of_the_request(
    stack: Stack, edge: Edge, spans: InMemorySpanExporter
) -> None:
    async with stack.client() as client:
        created = await client.post("/api/v1/tasks/task", params={"message": "traced"})
    line = await _access_line(edge, created.headers["x-request-id"])
    trace_id = line["traceparent"].split("-")[1]
    async with redis.Redis.from_url(stack.gateway_settings.redis_url) as client_:
        entries: Any = await client_.xrange(SampleTaskRequested.STREAM)
    [(_id, fields)] = entries
    headers = json.loads(fields[b"__data__"])["headers"]

    worker = ServiceProcess(
        "worker",
        env={
            "WORKER_REDIS_URL": stack.gateway_settings.redis_url,
            "WORKER_HTTP_PORT": str(free_port()),
            "WORKER_SAMPLE_TASK_S": "0",
            "WORKER_PURGE_INTERVAL_S": "0",
            "WORKER_REPORT_INTERVAL_S": "0",
            "TLS_DIR": str(stack.workload_tls("worker").folder),
        },
    )
    await worker.start()
    try:
        done = await worker.wait_for_log(
            lambda entry: entry["msg"] == "job succeeded", timeout_s=20
        )
    finally:
        await worker.terminate(timeout_s=15)

    assert headers["traceparent"].split("-")[1] == trace_id
    assert done["trace_id"] == trace_id
    assert done["job_id"] == created.json()["id"]
