"""The ASGI application (Starlette): the Substra REST API over the organization's gRPC services.

At start-up (the lifespan): migrate the ``gateway`` schema, provision the users file, open the
upstream channels, build the route table — every ``google.api.http`` binding of the services'
descriptors plus the adapters for what transcoding cannot express — and, when asked, register
the organization on its users' channels. Every request then goes through one dispatcher:
match → authenticate → handler, with errors rendered by :mod:`gateway.errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tessera.asset.v1 import asset_service_pb2, asset_service_pb2_grpc
from tessera.compute.v1 import compute_service_pb2
from tessera.event.v1 import event_service_pb2
from tessera.storage.v1 import storage_service_pb2

from gateway import openapi
from gateway.auth import Authenticator, LoginThrottle, TokenEndpoints
from gateway.downloads import Downloads
from gateway.errors import HttpError, rpc_error_response
from gateway.router import Endpoint, Router, adapter
from gateway.settings import GatewaySettings
from gateway.tables import SCHEMA
from gateway.transcoder import Transcoder, rpc_routes
from gateway.uploads import Uploads
from gateway.upstreams import Upstreams
from gateway.users import Accounts, UserEntry, parse_users_file
from gateway.views import Views
from services.kit import db, telemetry
from services.kit.identity import CHANNEL_HEADER
from services.kit.settings import SettingsError

log = logging.getLogger("tessera.gateway")
MIGRATIONS = Path(__file__).parent / "migrations"
# The descriptors whose annotations become routes.
SERVICE_FILES = (
    asset_service_pb2.DESCRIPTOR,
    storage_service_pb2.DESCRIPTOR,
    compute_service_pb2.DESCRIPTOR,
    event_service_pb2.DESCRIPTOR,
)
HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

_MULTIPART = {"content": {"multipart/form-data": {"schema": {"type": "object"}}}}
_FILE = {"200": {"description": "The file", "content": {"application/octet-stream": {}}}}


@dataclass
class Gateway:
    """What the dispatcher needs, built in the lifespan."""

    router: Router
    authenticator: Authenticator
    upstreams: Upstreams
    openapi: dict | None = None


def endpoints(
    transcoder: Transcoder,
    tokens: TokenEndpoints,
    uploads: Uploads,
    downloads: Downloads,
    views: Views,
    health,
    openapi_json,
) -> list[Endpoint]:
    """The whole route table: transcoded RPCs first, then the adapters."""
    table = [
        Endpoint(
            route.verb,
            route.template,
            _rpc_handler(transcoder, route),
            route.method.name,
            rpc=route,
        )
        for route in rpc_routes(SERVICE_FILES)
    ]
    table += [
        adapter("GET", "/healthz", health, "healthz", public=True, summary="Health of the gateway's upstreams"),
        adapter("GET", "/openapi.json", openapi_json, "openapi", public=True, summary="This document"),
        adapter("GET", "/schema", openapi_json, "schema", public=True, summary="This document (Substra's path)"),
        adapter(
            "GET", "/info", views.info, "info", public=True, summary="The organization and, with a token, the user"
        ),
        adapter(
            "POST",
            "/api-token-auth",
            tokens.login,
            "login",
            public=True,
            summary="Log in (form-encoded username and password): an implicit token",
            requestBody={"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}},
        ),
        adapter("POST", "/api-token", tokens.create, "create_api_token", channel=False, summary="A named API token"),
        adapter(
            "GET", "/active-api-tokens", tokens.active, "list_api_tokens", channel=False, summary="The user's tokens"
        ),
        adapter(
            "DELETE",
            "/active-api-tokens",
            tokens.delete,
            "delete_api_token",
            channel=False,
            summary="Revoke a token (?id=)",
        ),
        adapter(
            "POST",
            "/data_manager",
            uploads.data_manager,
            "add_dataset",
            summary="Register a dataset",
            requestBody=_MULTIPART,
        ),
        adapter(
            "POST", "/function", uploads.function, "add_function", summary="Register a function", requestBody=_MULTIPART
        ),
        adapter(
            "POST",
            "/data_sample",
            uploads.data_samples,
            "add_data_samples",
            summary="Upload data samples",
            requestBody=_MULTIPART,
        ),
        adapter(
            "POST", "/data_sample/bulk_update", views.bulk_update, "link_data_samples", summary="Link data samples"
        ),
        adapter("GET", "/function/{key}/file", downloads.function_file, "download_function", responses=_FILE),
        adapter(
            "GET", "/function/{key}/description", downloads.function_description, "describe_function", responses=_FILE
        ),
        adapter("GET", "/data_manager/{key}/opener", downloads.opener, "download_opener", responses=_FILE),
        adapter(
            "GET",
            "/data_manager/{key}/description",
            downloads.data_manager_description,
            "describe_dataset",
            responses=_FILE,
        ),
        adapter("GET", "/model/{key}/file", downloads.model_file, "download_model", responses=_FILE),
        adapter("GET", "/task/{key}/logs", downloads.task_logs, "task_logs", responses=_FILE),
        adapter("GET", "/logs/{key}/file", downloads.logs_file, "download_logs", responses=_FILE),
        adapter("GET", "/function/{key}/profiling", views.function_profiling, "function_profiling"),
        adapter("GET", "/task_profiling", views.task_profiling_list, "list_task_profiling"),
        adapter("GET", "/task_profiling/{key}", views.task_profiling, "task_profiling"),
    ]
    return table


def _rpc_handler(transcoder: Transcoder, route):
    async def handle(request: Request, principal, params: dict[str, str]) -> Response:
        return await transcoder.handle(route, request, principal, params)

    return handle


async def _register_organization(settings: GatewaySettings, upstreams: Upstreams, channels: list[str]) -> None:
    """Register this organization on each channel, retrying while the ledger is unreachable."""
    stub: asset_service_pb2_grpc.AssetServiceStub = upstreams.asset()
    delay = 0.5
    for channel in channels or [""]:
        metadata = ((CHANNEL_HEADER, channel),) if channel else ()
        while True:
            try:
                await stub.RegisterOrganization(
                    asset_service_pb2.RegisterOrganizationRequest(address=settings.base_url()),
                    metadata=metadata,
                    timeout=settings.health_timeout * 5,
                )
                log.info("organization registered", extra={"fields": {"channel": channel}})
                break
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
                    break
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    log.error("organization registration refused: %s", exc.details())
                    break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def create_app(settings: GatewaySettings) -> Starlette:
    """The application; everything that needs the event loop is built in its lifespan."""
    tracer = telemetry.tracer(settings.service_name)
    holder: dict[str, Gateway] = {}

    async def health(request: Request, principal, params) -> JSONResponse:
        statuses = await holder["gateway"].upstreams.health()
        healthy = all(status == "SERVING" for status in statuses.values())
        return JSONResponse(
            {"status": "ok" if healthy else "degraded", "upstreams": statuses}, status_code=200 if healthy else 503
        )

    async def openapi_json(request: Request, principal, params) -> JSONResponse:
        gateway = holder["gateway"]
        if gateway.openapi is None:
            gateway.openapi = openapi.document(gateway.router.endpoints, settings.version)
        return JSONResponse(gateway.openapi)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        if not settings.database_url:
            raise SettingsError("TESSERA_DATABASE_URL is required (the gateway keeps its users there)")
        engine = db.create_engine(settings.database_url, SCHEMA)
        await asyncio.to_thread(db.migrate, engine, SCHEMA, MIGRATIONS)
        accounts = Accounts(engine)
        entries: list[UserEntry] = []
        if settings.users_file:
            entries = parse_users_file(settings.users_file)
            await accounts.provision(entries)
        upstreams = Upstreams(settings)
        authenticator = Authenticator(accounts, settings.token_cache_seconds)
        transcoder = Transcoder(upstreams, settings.max_json_bytes)
        downloads = Downloads(upstreams, settings.model_export_channels)
        table = endpoints(
            transcoder,
            TokenEndpoints(
                accounts, authenticator, LoginThrottle(settings.login_rate), settings.token_lifetime_minutes
            ),
            Uploads(
                upstreams,
                settings.base_url(),
                settings.max_upload_bytes,
                settings.max_json_bytes,
                settings.servermedias_root,
            ),
            downloads,
            Views(settings, upstreams, authenticator.authenticate, downloads.export_enabled),
            health,
            openapi_json,
        )
        holder["gateway"] = Gateway(Router(table), authenticator, upstreams)
        registration = None
        if settings.register_organization and upstreams.configured("asset"):
            channels = sorted({entry.channel for entry in entries if entry.channel})
            registration = asyncio.create_task(_register_organization(settings, upstreams, channels))
        try:
            yield
        finally:
            if registration is not None:
                registration.cancel()
            await upstreams.close()
            engine.dispose()

    async def dispatch(request: Request) -> Response:
        started = time.perf_counter()
        gateway = holder["gateway"]
        path = request.scope["path"]
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :] or "/"
        route_name = ""
        with tracer.start_as_current_span(f"HTTP {request.method}", kind=SpanKind.SERVER) as span:
            try:
                endpoint, params = gateway.router.match(request.method, path)
                route_name = endpoint.name
                span.update_name(f"{request.method} {endpoint.template.openapi_path()}")
                principal = None
                if not endpoint.public:
                    principal = await gateway.authenticator.authenticate(request, endpoint.channel)
                response = await endpoint.handler(request, principal, params)
            except HttpError as exc:
                response = exc.response()
            except grpc.RpcError as exc:
                response = rpc_error_response(exc)
            except MultiPartException as exc:
                response = JSONResponse({"detail": f"malformed form body: {exc.message}"}, status_code=400)
            except ClientDisconnect:
                response = JSONResponse({"detail": "the client disconnected"}, status_code=400)
            except Exception:
                log.exception("unhandled error on %s %s", request.method, path)
                trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
                response = JSONResponse({"detail": f"internal error (trace {trace_id})"}, status_code=500)
            span.set_attribute("http.status_code", response.status_code)
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

    return Starlette(routes=[Route("/{path:path}", dispatch, methods=HTTP_METHODS)], lifespan=lifespan)
