"""OpenTelemetry: the tracer provider, its exporters, the gRPC instrumentation, and trace context in NATS headers.

Spans are always created, so trace ids reach the logs even when nothing is exported. Export follows
the standard variables: ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
sends spans over OTLP/gRPC in batches; ``OTEL_TRACES_EXPORTER=console`` prints them; tests install an
in-memory exporter with :func:`configure_tracing`. gRPC calls get their client and server spans, and
the W3C trace context in their metadata, from opentelemetry-instrumentation-grpc
(:func:`server_interceptors`, :func:`aio_client_interceptors`; blocking channels send the context
with :func:`inject_metadata`). Work messages carry it in their NATS headers and ledger events store
it (:func:`trace_carrier`, :func:`context_from`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from opentelemetry import propagate, trace
from opentelemetry.instrumentation import grpc as grpc_instrumentation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")

UNTRACED_PREFIXES = (b"/grpc.health.", b"/grpc.reflection.")
"""Probes and API discovery make no spans: they would bury the calls that matter."""


def _traced(details) -> bool:
    """Whether a call gets a span: the instrumentation's ``filter_``, given a call's details (server or client;
    grpc gives the method as str or bytes). One prefix test per call: the instrumentation's composable filters
    (``negate(any_of(service_prefix(...)))``) split and normalize the method's path on every call, a few
    percent of a busy client's CPU."""
    method = getattr(details, "method", None) or getattr(details, "full_method", "")
    if isinstance(method, str):
        method = method.encode()
    return not method.startswith(UNTRACED_PREFIXES)


_configured = False


def configure_tracing(service: str, exporters: Sequence[SpanExporter] = ()) -> None:
    """Install the process-wide tracer provider once; later calls only add ``exporters``."""
    global _configured
    provider = trace.get_tracer_provider()
    if not _configured:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        for processor in _processors_from_environment():
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        _configured = True
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]


def _processors_from_environment(environ=os.environ) -> list:
    """Span processors the standard OTEL_* variables ask for."""
    processors = []
    if any(environ.get(name) for name in OTLP_ENDPOINT_VARIABLES):
        # Imported on use: the exporter loads its own gRPC stubs, needless when nothing is exported.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))  # endpoint, headers, TLS from OTEL_* variables
    if environ.get("OTEL_TRACES_EXPORTER", "none").lower() == "console":
        processors.append(SimpleSpanProcessor(ConsoleSpanExporter()))
    return processors


def server_interceptors() -> list:
    """Interceptors that open a server span per call, continuing the caller's trace context."""
    return [grpc_instrumentation.aio_server_interceptor(filter_=_traced)]


def aio_client_interceptors() -> list:
    """Interceptors that open a client span per call and send the trace context in its metadata."""
    return grpc_instrumentation.aio_client_interceptors(filter_=_traced)


def inject_metadata() -> list[tuple[str, str]]:
    """gRPC metadata carrying the current trace context, for blocking channels (tools and tests): the
    instrumentation's blocking interceptor turns streaming calls into bare generators, losing ``cancel()``
    and trailing metadata, so those channels propagate the context without making client spans."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return list(carrier.items())


def tracer(name: str) -> trace.Tracer:
    """The tracer for instrumentation scope ``name``."""
    return trace.get_tracer(name)


def trace_carrier(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` plus the current trace context as W3C headers (``traceparent``, ``tracestate`` when set):
    the headers of a NATS message, or what a ledger event stores, for the reader to continue the trace.
    Nothing is added outside a span."""
    carrier = dict(base or {})
    propagate.inject(carrier)
    return carrier


def context_from(carrier: Mapping[str, str] | None):
    """The trace context a :func:`trace_carrier` holds (none: an empty context, so a span started in it
    begins a new trace)."""
    return propagate.extract(dict(carrier or {}))
