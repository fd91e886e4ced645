"""Test helpers: run an asyncio gRPC server on a background thread, call it with sync clients; receive
the spans processes export over OTLP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from services.kit.server import GrpcServer


class ServerThread:
    """Builds and serves a :class:`GrpcServer` on its own event loop in a daemon thread."""

    def __init__(self, build: Callable[[], Awaitable[GrpcServer]]) -> None:
        self._build = build
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: GrpcServer | None = None
        self.port: int | None = None

    def _call(self, coroutine, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def __enter__(self) -> ServerThread:
        self._thread.start()

        async def start():
            self.server = await self._build()
            self.port = await self.server.start()

        self._call(start())
        return self

    @property
    def addr(self) -> str:
        """Where the server listens."""
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self._call(self.server.stop(0.5))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as an OTLP exporter sent it: which service, what, and where it sits in its trace."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str


class OtlpCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP/gRPC trace receiver on a loopback port (the tests' stand-in for an OpenTelemetry
    Collector): the processes under test export to ``endpoint`` as they would to a collector."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        """The value of ``OTEL_EXPORTER_OTLP_ENDPOINT`` that reaches this collector."""
        return f"http://127.0.0.1:{self.port}"

    def Export(self, request, context):
        received = []
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            service = attributes.get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service, span.name, span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex()
                        )
                    )
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[ReceivedSpan]:
        """Every span received so far."""
        with self._lock:
            return list(self._spans)

    def __enter__(self) -> OtlpCollector:
        self._server.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.stop(0)
