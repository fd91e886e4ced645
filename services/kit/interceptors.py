"""The server interceptor chain: identity, request logging and error translation.

One ``grpc.aio`` interceptor wraps every handler of a service (health checking and reflection
excepted, so ``grpcurl`` can explore a server without credentials). It runs inside the server span
that opentelemetry-instrumentation-grpc opens (continuing the caller's W3C trace context,
:func:`services.kit.telemetry.server_interceptors`). Per call it:

1. names the calling organization and channel on that span;
2. authenticates the caller from its credential and binds it to :func:`current_caller`;
3. refuses a request message holding a NUL character in a string (INVALID_ARGUMENT: PostgreSQL's text
   cannot store one), then runs the handler;
4. turns a :class:`DomainError` into its canonical status with ``ErrorInfo`` / ``BadRequest``
   details, and any other exception into a generic INTERNAL that leaks nothing;
5. logs one structured line with the method, organization, code and duration.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import time
from collections.abc import Callable

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from services.kit import errors, status
from services.kit.identity import Authenticator, set_current_caller

log = logging.getLogger("tessera.rpc")

# Services callable without credentials: probes and API discovery only.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class _CallOutcome:
    """Mutable record of how a call ended, for the log line and the span."""

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK
        self.org = ""


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every non-public RPC handler with the chain described in the module docstring."""

    def __init__(self, authenticator: Authenticator, *, only_organization: str | None = None) -> None:
        self._authenticator = authenticator
        self._only = only_organization

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        return _wrap_handler(handler, lambda behavior: self._wrap(method, behavior, handler))

    def _wrap(self, method: str, behavior: Callable, handler: grpc.RpcMethodHandler) -> Callable:
        streaming_response = handler.response_streaming

        async def unary(request, context):
            async with self._call(method, context):
                _refuse_nul(request)
                result = behavior(request, context)
                return await result if inspect.isawaitable(result) else result

        async def streaming(request, context):
            async with self._call(method, context):
                _refuse_nul(request)
                result = behavior(request, context)
                if inspect.isasyncgen(result):
                    async for item in result:
                        yield item
                else:
                    if inspect.isawaitable(result):
                        result = await result
                    for item in result or ():
                        yield item

        return streaming if streaming_response else unary

    @contextlib.asynccontextmanager
    async def _call(self, method: str, context):
        """Around one call: authenticate, translate what the handler raises, log how it ended."""
        outcome = _CallOutcome()
        started = time.perf_counter()
        span = trace.get_current_span()
        try:
            self._authenticate(context, outcome, span)
            yield
        except Exception as exc:  # noqa: BLE001 - translated below, never swallowed
            await self._fail(exc, context, outcome, span, method)
        finally:
            self._log(method, outcome, started)

    def _authenticate(self, context, outcome: _CallOutcome, span) -> None:
        metadata = {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}
        caller = self._authenticator.authenticate(metadata, context.auth_context() or {})
        outcome.org = caller.org_id
        if self._only is not None and caller.org_id != self._only:
            raise errors.PermissionDenied(
                f"this service belongs to organization {self._only} and answers it only", reason="NOT_OWN_ORGANIZATION"
            )
        set_current_caller(caller)
        span.set_attribute("tessera.org", caller.org_id)
        span.set_attribute("tessera.channel", caller.channel)

    async def _fail(self, exc: Exception, context, outcome: _CallOutcome, span, method: str) -> None:
        if isinstance(exc, errors.DomainError):
            outcome.code = status.grpc_code(exc)
            span.set_status(Status(StatusCode.ERROR, exc.reason))
            await context.abort_with_status(status.to_grpc_status(exc))
        if _is_abort(exc):
            # The handler aborted on its own; keep its status.
            outcome.code = context.code() or grpc.StatusCode.UNKNOWN
            raise exc
        if isinstance(exc, NotImplementedError):
            outcome.code = grpc.StatusCode.UNIMPLEMENTED
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
        outcome.code = grpc.StatusCode.INTERNAL
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        log.exception("unhandled error in %s", method)
        trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
        await context.abort(grpc.StatusCode.INTERNAL, f"internal error (trace {trace_id})")

    @staticmethod
    def _log(method: str, outcome: _CallOutcome, started: float) -> None:
        log.info(
            "rpc %s %s",
            method,
            outcome.code.name,
            extra={
                "fields": {
                    "rpc": method,
                    "code": outcome.code.name,
                    "org": outcome.org,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                }
            },
        )


def _is_abort(exc: BaseException) -> bool:
    return isinstance(exc, grpc.aio.AbortError) or type(exc).__name__ == "AbortError"


def _wrap_handler(handler: grpc.RpcMethodHandler, wrap: Callable[[Callable], Callable]) -> grpc.RpcMethodHandler:
    """A copy of ``handler`` whose behavior is ``wrap(original behavior)``."""
    if handler.unary_unary:
        factory, behavior = grpc.unary_unary_rpc_method_handler, handler.unary_unary
    elif handler.unary_stream:
        factory, behavior = grpc.unary_stream_rpc_method_handler, handler.unary_stream
    elif handler.stream_unary:
        factory, behavior = grpc.stream_unary_rpc_method_handler, handler.stream_unary
    else:
        factory, behavior = grpc.stream_stream_rpc_method_handler, handler.stream_stream
    return factory(
        wrap(behavior),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _refuse_nul(request) -> None:
    """INVALID_ARGUMENT naming the first string field of ``request`` that holds a NUL character."""
    if isinstance(request, Message):
        field = _nul_field(request, "")
        if field is not None:
            raise errors.InvalidArgument.on(field, "NUL characters are not allowed")


def _nul_field(message: Message, prefix: str) -> str | None:
    # A NUL character is a zero byte once encoded, which most messages do not have at all (proto3 encodes
    # no zero and no empty string): only the messages that have one are walked, field by field.
    if b"\x00" not in message.SerializeToString():
        return None
    for field, value in message.ListFields():
        name = prefix + field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            if any("\x00" in item for item in (value if field.is_repeated else (value,))):
                return name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if (isinstance(key, str) and "\x00" in key) or (isinstance(item, str) and "\x00" in item):
                        return name
                    if isinstance(item, Message) and (found := _nul_field(item, f"{name}[{key}].")) is not None:
                        return found
                continue
            for index, item in enumerate(value) if field.is_repeated else ((None, value),):
                found = _nul_field(item, name + (f"[{index}]." if index is not None else "."))
                if found is not None:
                    return found
    return None
