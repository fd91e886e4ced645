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
from gateway.me import MeEndpoints
from gateway.pages import Pages
from gateway.router import Endpoint, Handler, adapter
from gateway.transcoder import RpcRoute, Transcoder, rpc_routes
from gateway.uploads import Uploads
from gateway.user_admin import UserEndpoints
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


def _json_body(*required: str, **properties: dict) -> dict:
    schema = {"type": "object", "properties": properties, "required": list(required)}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_STRING = {"type": "string"}
_ROLE = {"type": "string", "enum": ["ADMIN", "USER"]}
_SESSION = {
    "200": {
        "description": "The access token's claims; the header.payload, signature and refresh cookies are set",
        "content": {"application/json": {"schema": {"type": "object", "properties": {
            "token_type": _STRING, "exp": {"type": "integer"}, "iat": {"type": "integer"}, "jti": _STRING,
            "user_id": {"type": "integer"}}}}},
    },
    "default": {"description": "Error"},
}  # fmt: skip
FILE_RESPONSES = {"200": {"description": "The file", "content": {"application/octet-stream": {}}}}


def table(
    transcoder: Transcoder,
    tokens: TokenEndpoints,
    uploads: Uploads,
    downloads: Downloads,
    views: Views,
    me: MeEndpoints,
    users: UserEndpoints,
) -> list[Endpoint]:
    """The whole route table: transcoded RPCs first, then the adapters."""
    rpcs = rpc_routes(SERVICE_FILES)
    pages = Pages(transcoder, {route.method.name: route for route in rpcs if route.verb == "GET"})
    # Transcoded routes whose query binding the frontend needs otherwise (frontend contract §4).
    bound_by_pages = {"GetTaskInputAssets": pages.input_assets}
    endpoints = [
        Endpoint(
            route.verb,
            route.template,
            bound_by_pages.get(route.method.name) or _rpc_handler(transcoder, route),
            route.method.name,
            rpc=route,
        )
        for route in rpcs
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
        *frontend_routes(me, users),
        *page_routes(pages),
    ]
    return endpoints


def page_routes(pages: Pages) -> list[Endpoint]:
    """Routes only the frontend's pages read (frontend contract §4)."""
    csv = {"200": {"description": "CSV, streamed", "content": {"text/csv": {}}}, "default": {"description": "Error"}}
    return [
        adapter("GET", "/compute_plan_metadata", pages.compute_plan_metadata, "list_compute_plan_metadata",
                summary="Every metadata key of the visible compute plans (a bare list)"),
        adapter("GET", "/compute_plan/{key}/task", pages.plan_tasks, "list_compute_plan_tasks",
                summary="The tasks of one plan (the filters, ordering and pages of /task/)"),
        adapter("GET", "/compute_plan/{key}/workflow_graph", pages.workflow_graph, "compute_plan_workflow_graph",
                summary="A plan's tasks and their parent-output to child-input edges (403 above 5000 tasks)"),
        adapter("GET", "/performance/export", pages.performance_export, "export_performances", responses=csv,
                summary="CSV of the performances of the selected plans (?key, metadata_columns, identifier, filters)"),
    ]  # fmt: skip


def frontend_routes(me: MeEndpoints, users: UserEndpoints) -> list[Endpoint]:
    """The web frontend's session and the administration of users (frontend contract §2, §3)."""
    user = "/users/{username}"
    return [
        adapter(
            "POST", "/me/login", me.login, "frontend_login", public=True, requestBody=_json_body(
                "username", "password", username=_STRING, password=_STRING), responses=_SESSION,
            summary="Log in the web frontend: the access token split across cookies, and a refresh token",
        ),
        adapter(
            "POST", "/me/refresh", me.refresh, "frontend_refresh", public=True, responses=_SESSION,
            summary="Rotate the refresh cookie: new access and refresh tokens (a replayed one revokes the session)",
        ),
        adapter("GET", "/me/logout", me.logout, "frontend_logout", public=True,
                summary="End the session of the refresh cookie and expire the three cookies"),
        adapter("GET", "/users", users.list, "list_users",
                summary="The users of the caller's channel (?match, role, ordering, page, page_size)"),
        adapter("POST", "/users", users.create, "create_user", summary="Create a user (ADMIN only)",
                requestBody=_json_body("username", "password", username=_STRING, password=_STRING, role=_ROLE),
                responses={"201": {"description": "The user"}, "default": {"description": "Error"}}),
        adapter("GET", user, users.retrieve, "get_user", summary="A user of the caller's channel"),
        adapter("PUT", user, users.update, "update_user", summary="Change a user's role (ADMIN only)",
                requestBody=_json_body("role", role=_ROLE)),
        adapter("DELETE", user, users.delete, "delete_user", summary="Delete a user (ADMIN only; not oneself)",
                responses={"204": {"description": "Deleted"}, "default": {"description": "Error"}}),
        adapter("POST", f"{user}/reset_password", users.reset_password, "reset_password",
                summary="A one-time token to set the user's password (ADMIN only)"),
        adapter("GET", f"{user}/verify_token", users.verify_token, "verify_reset_token", public=True,
                summary="Whether a password reset token (?token=) is valid",
                parameters=[{"name": "token", "in": "query", "required": True, "schema": _STRING}]),
        adapter("POST", f"{user}/set_password", users.set_password, "set_password", public=True,
                summary="Set a new password with a reset token",
                requestBody=_json_body("token", "password", token=_STRING, password=_STRING)),
        adapter("GET", "/users-awaiting-approval", users.awaiting_approval, "list_users_awaiting_approval",
                summary="Users awaiting approval (only with OIDC: always empty here)"),
    ]  # fmt: skip


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
