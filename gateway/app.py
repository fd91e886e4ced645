"""The HTTP dispatch: one Starlette route in front of the gateway's own route table.

Every request goes match → authenticate → handler, with errors rendered by :mod:`gateway.errors`
and one span and one log line per request. CORS (:mod:`gateway.cors`) wraps it all: a preflight is
answered before routing, and every answer, errors included, gets the headers its origin may have.
What the handlers are and how they are built is the composition root's business (:mod:`gateway.bootstrap`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketClose

from gateway import openapi
from gateway.auth import Authenticator
from gateway.cors import Cors
from gateway.errors import HttpError, rpc_error_response, unavailable
from gateway.inputs import check_path_and_query
from gateway.router import Endpoint, Router, adapter
from services.kit.errors import Unavailable

log = logging.getLogger("tessera.gateway")


class Gateway:
    """Serves a route table, plus ``/openapi.json`` and ``/schema/``, its OpenAPI description."""

    def __init__(
        self,
        endpoints: list[Endpoint],
        authenticator: Authenticator,
        *,
        version: str,
        tracer: trace.Tracer,
        cors: Cors | None = None,
    ) -> None:
        described = [
            adapter("GET", "/openapi.json", self.openapi_json, "openapi", public=True, summary="This document"),
            adapter(
                "GET", "/schema", self.openapi_json, "schema", public=True, summary="This document (Substra's path)"
            ),
        ]
        self.router = Router([*endpoints, *described])
        self._authenticator = authenticator
        self._version = version
        self._tracer = tracer
        self._cors = cors or Cors(())
        self._openapi: dict | None = None

    def application(self, lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]]) -> Starlette:
        """The ASGI application: every path and verb to :meth:`dispatch` (Starlette's router only runs the
        lifespan: its path patterns do not match every path, one with a newline for instance)."""
        application = Starlette(lifespan=lifespan)
        application.router.default = self._serve
        return application

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await WebSocketClose()(scope, receive, send)
            return
        response = await self.dispatch(Request(scope, receive))
        await response(scope, receive, send)

    async def openapi_json(self, request: Request, principal, params: dict[str, str]) -> JSONResponse:
        """The OpenAPI document of the route table, generated on first use."""
        if self._openapi is None:
            self._openapi = openapi.document(self.router.endpoints, self._version)
        return JSONResponse(self._openapi)

    async def dispatch(self, request: Request) -> Response:
        """Match, authenticate, handle; every failure becomes a JSON error body."""
        started = time.perf_counter()
        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        route_name = ""
        with self._tracer.start_as_current_span(f"HTTP {request.method}", kind=SpanKind.SERVER) as span:
            try:
                check_path_and_query(path, request.query_params.multi_items())
                if request.method == "OPTIONS":
                    response = self._options(request, path)
                else:
                    endpoint, params = self.router.match(request.method, path)
                    route_name = endpoint.name
                    span.update_name(f"{request.method} {endpoint.template.openapi_path()}")
                    principal = None
                    if not endpoint.public:
                        principal = await self._authenticator.authenticate(request, endpoint.channel)
                    response = await endpoint.handler(request, principal, params)
            except HttpError as exc:
                response = exc.response()
            except grpc.RpcError as exc:
                response = rpc_error_response(exc)
            except MultiPartException as exc:
                response = JSONResponse({"detail": f"malformed form body: {exc.message}"}, status_code=400)
            except HTTPException as exc:  # starlette's own refusals
                response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
            except Unavailable as exc:  # the gateway's own database
                log.warning("%s %s: %s", request.method, path, exc.message)
                response = unavailable(exc.message)
            except ClientDisconnect:
                response = JSONResponse({"detail": "the client disconnected"}, status_code=400)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, path)
                trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
                response = JSONResponse({"detail": f"internal error (trace {trace_id})"}, status_code=500)
            span.set_attribute("http.status_code", response.status_code)
        self._cors.decorate(request, response)
        log.info(
            "http %s %s %s",
            request.method,
            path,
            response.status_code,
            extra={
                "fields": {
                    "method": request.method,
                    "path": path,
                    "route": route_name,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                }
            },
        )
        return response

    def _options(self, request: Request, path: str) -> Response:
        """A CORS preflight on any path; otherwise the verbs the path answers (``Allow``), or 404."""
        if self._cors.is_preflight(request):
            return self._cors.preflight(request)
        verbs = self.router.verbs(path)
        if not verbs:
            raise HttpError(404, "Not found.")
        return Response(status_code=200, headers={"Allow": ", ".join([*verbs, "OPTIONS"])})
