"""The route table: every ``google.api.http`` binding of the services, then the adapters for what
transcoding cannot express (docs/adr/0005-gateway.md).

File downloads are not written here: their paths are the file routes of the kit
(:data:`services.kit.storage.addresses.ROUTES`), the same ones ``storage_address`` builds, so a stored
address and the route serving it cannot drift apart. The gateway itself adds ``/openapi.json`` and
``/schema/``, its description of this table (:class:`gateway.app.Gateway`).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from tessera.asset.v1 import asset_service_pb2
from tessera.compute.v1 import compute_service_pb2
from tessera.event.v1 import event_service_pb2
from tessera.storage.v1 import storage_service_pb2

from gateway.auth import TokenEndpoints
from gateway.downloads import Downloads
from gateway.router import Endpoint, Handler, adapter
from gateway.transcoder import RpcRoute, Transcoder, rpc_routes
from gateway.uploads import Uploads
from gateway.views import Views
from services.kit.storage.addresses import ROUTES

# The descriptors whose annotations become routes.
SERVICE_FILES = (
    asset_service_pb2.DESCRIPTOR,
    storage_service_pb2.DESCRIPTOR,
    compute_service_pb2.DESCRIPTOR,
    event_service_pb2.DESCRIPTOR,
)

_MULTIPART = {"content": {"multipart/form-data": {"schema": {"type": "object"}}}}
FILE_RESPONSES = {"200": {"description": "The file", "content": {"application/octet-stream": {}}}}


def table(
    transcoder: Transcoder, tokens: TokenEndpoints, uploads: Uploads, downloads: Downloads, views: Views
) -> list[Endpoint]:
    """The whole route table: transcoded RPCs first, then the adapters."""
    endpoints = [
        Endpoint(route.verb, route.template, _rpc_handler(transcoder, route), route.method.name, rpc=route)
        for route in rpc_routes(SERVICE_FILES)
    ]
    endpoints += [
        adapter("GET", "/healthz", views.health, "healthz", public=True, summary="Health of the gateway's upstreams"),
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
        *file_routes(downloads.files()),
        # The SDK builds this one itself (get_logs, download_logs): the logs of a task, not a file address.
        adapter("GET", "/task/{key}/logs", downloads.task_logs, "task_logs", responses=FILE_RESPONSES),
        adapter("GET", "/function/{key}/profiling", views.function_profiling, "function_profiling"),
        adapter("GET", "/task_profiling", views.task_profiling_list, "list_task_profiling"),
        adapter("GET", "/task_profiling/{key}", views.task_profiling, "task_profiling"),
    ]
    return endpoints


def file_routes(handlers: Mapping[int, tuple[str, Handler]]) -> list[Endpoint]:
    """A ``GET`` endpoint per file kind, on that kind's route in the kit's :data:`ROUTES`; ``handlers``
    maps a file kind to its operation name and handler."""
    return [
        adapter("GET", "/" + ROUTES[kind].strip("/"), handler, name, responses=FILE_RESPONSES)
        for kind, (name, handler) in handlers.items()
    ]


def _rpc_handler(transcoder: Transcoder, route: RpcRoute) -> Handler:
    async def handle(request: Request, principal, params: dict[str, str]) -> Response:
        return await transcoder.handle(route, request, principal, params)

    return handle
