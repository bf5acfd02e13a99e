"""OpenTelemetry traces: W3C trace context carried across every hop, spans exported on demand.

Context always travels, exporting or not: Envoy starts a trace (or continues the client's), the
gateway continues it (`traceparent`), every gRPC call carries it in its metadata, and every event
and job carries it in its stream entry's headers, so the worker's job belongs to the request that
enqueued it. Log lines carry the trace id.

Exporting is off by default and switched on by the standard settings: `OTEL_TRACES_EXPORTER=otlp`
(then `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS`, ... as the OTLP exporter reads
them) or `console`; `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` name the process;
`OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` sample (parent-based by default).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

TRACER = "meshplate"


def configure_tracing(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install an exporting tracer provider when OTEL_TRACES_EXPORTER asks for one; whether it
    did. Without one, spans are not recorded but the context still propagates."""
    env = os.environ if environ is None else environ
    wanted = {name.strip().lower() for name in env.get("OTEL_TRACES_EXPORTER", "none").split(",")}
    exporters: list[SpanExporter] = []
    if "otlp" in wanted:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporters.append(OTLPSpanExporter())
    if "console" in wanted:
        exporters.append(ConsoleSpanExporter())
    if not exporters:
        return False
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def shutdown_tracing() -> None:
    """Flush what is left to export (a no-op without an exporting provider)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def inject(carrier: MutableMapping[str, str]) -> None:
    """Add the current trace context (`traceparent`, `tracestate`) to `carrier`."""
    propagate.inject(carrier)


def extract(carrier: Mapping[str, Any]) -> Context:
    """The trace context found in `carrier` (headers, metadata), or an empty one."""
    return propagate.extract({k.lower(): v for k, v in carrier.items() if isinstance(v, str)})


def recording() -> bool:
    """Whether spans are exported (else they cost nothing but the context still travels)."""
    return isinstance(trace.get_tracer_provider(), TracerProvider)


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Context | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    links: Sequence[trace.Link] = (),
) -> Iterator[trace.Span]:
    """A span, current while the block runs (its context is what calls from inside carry)."""
    tracer = trace.get_tracer(TRACER)
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with tracer.start_as_current_span(
            name,
            kind=kind,
            attributes=dict(attributes or {}),
            links=links,
            # Whether an exception is a failure is the caller's to say (a NOT_FOUND is not).
            record_exception=False,
            set_status_on_exception=False,
        ) as current:
            yield current
    finally:
        if token is not None:
            otel_context.detach(token)


def current_trace_id() -> str | None:
    """The current trace id in hex, when there is one."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
