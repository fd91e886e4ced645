"""OpenTelemetry tracing set-up and trace-context propagation over gRPC metadata and NATS headers.

Nothing is exported unless asked: ``OTEL_TRACES_EXPORTER=console`` prints spans, and tests
install an in-memory exporter with :func:`configure_tracing`. Spans are always created, so
trace ids reach the logs even when nothing is exported.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

_configured = False


def configure_tracing(service: str, exporters: Sequence[SpanExporter] = ()) -> None:
    """Install the process-wide tracer provider once; later calls only add ``exporters``."""
    global _configured
    provider = trace.get_tracer_provider()
    if not _configured:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        if os.environ.get("OTEL_TRACES_EXPORTER", "none").lower() == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        _configured = True
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]


def tracer(name: str) -> trace.Tracer:
    """The tracer for instrumentation scope ``name``."""
    return trace.get_tracer(name)


def extract_context(metadata: Iterable[tuple[str, str | bytes]] | None):
    """The remote trace context carried in gRPC invocation metadata (W3C traceparent)."""
    carrier = {key: value for key, value in (metadata or ()) if isinstance(value, str)}
    return propagate.extract(carrier)


def inject_metadata() -> list[tuple[str, str]]:
    """gRPC metadata entries carrying the current trace context to the next hop."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


def inject_nats_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """NATS message headers: ``headers`` plus the current trace context (W3C ``traceparent``, and
    ``tracestate`` when set), for the consumer to continue the trace; nothing is added outside a span."""
    carrier = dict(headers or {})
    propagate.inject(carrier)
    return carrier


def extract_nats_context(headers: Mapping[str, str] | None):
    """The remote trace context carried in a NATS message's headers (None or no trace headers: an
    empty context, so a span started in it begins a new trace)."""
    return propagate.extract(dict(headers or {}))
