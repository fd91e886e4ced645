"""The gateway's route table (no I/O): file downloads are served on the kit's file routes, so every
address ``storage_address`` builds reaches the download of that file."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from tessera.storage.v1 import storage_pb2 as files

from gateway import routes
from gateway.auth import LoginThrottle, TokenEndpoints
from gateway.cors import Cors
from gateway.downloads import Downloads
from gateway.errors import HttpError
from gateway.me import MeEndpoints
from gateway.router import Router
from gateway.transcoder import Transcoder
from gateway.uploads import Uploads
from gateway.user_admin import UserEndpoints
from gateway.views import Views
from services.kit.storage.addresses import ROUTES, storage_address

KEY = "1b6ae5ca-8c5c-4ac3-9bcb-c8e9e4e7f3c5"


def _table() -> tuple[Router, Downloads]:
    # Handlers are only referenced while the table is built: nothing is called, so no upstream is needed.
    downloads = Downloads(None, ())
    table = routes.table(
        Transcoder(None, 0),
        TokenEndpoints(None, None, LoginThrottle(1), 1),
        Uploads(None, "", 0, 0),
        downloads,
        Views(None, None, None, downloads.export_enabled),
        MeEndpoints(None, LoginThrottle(1), Cors(())),
        UserEndpoints(None, None, LoginThrottle(1)),
    )
    return Router(table), downloads


def test_every_served_file_address_reaches_its_download():
    router, downloads = _table()
    served = downloads.files()
    assert set(served) == set(ROUTES) - {files.FILE_KIND_FUNCTION_IMAGE}
    for kind, (name, handler) in served.items():
        path = urlsplit(storage_address("https://org1.example", kind, KEY)).path
        endpoint, params = router.match("GET", path)
        assert (endpoint.name, endpoint.handler, params) == (name, handler, {"key": KEY})
        assert endpoint.openapi["responses"] == routes.FILE_RESPONSES and not endpoint.public


def test_file_routes_follow_the_kit_routes():
    async def handler(request, principal, params):
        raise AssertionError("not called")

    [endpoint] = routes.file_routes({files.FILE_KIND_MODEL: ("download_model", handler)})
    assert endpoint.verb == "GET" and endpoint.template.openapi_path() == "/model/{key}/file/"
    with pytest.raises(KeyError):  # a kind without a route in the kit has no download either
        routes.file_routes({files.FILE_KIND_DATA_SAMPLE: ("download_sample", handler)})


def test_the_built_image_and_unknown_files_are_not_routes():
    router, _ = _table()
    image = urlsplit(storage_address("https://org1.example", files.FILE_KIND_FUNCTION_IMAGE, KEY)).path
    for path in (image, f"/data_sample/{KEY}/file/"):
        with pytest.raises(HttpError) as info:
            router.match("GET", path)
        assert info.value.status in (404, 405)


def test_task_logs_keep_the_route_the_sdk_builds():
    router, downloads = _table()
    endpoint, params = router.match("GET", f"/task/{KEY}/logs/")
    assert endpoint.handler == downloads.task_logs and params == {"key": KEY}


def test_the_frontend_routes_and_who_may_call_them():
    router, _ = _table()
    public = {
        ("POST", "/me/login/"): "frontend_login",
        ("POST", "/me/refresh/"): "frontend_refresh",
        ("GET", "/me/logout/"): "frontend_logout",
        ("GET", "/users/ann/verify_token/"): "verify_reset_token",
        ("POST", "/users/ann/set_password/"): "set_password",
    }
    for (verb, path), name in public.items():
        endpoint, _ = router.match(verb, path)
        assert (endpoint.name, endpoint.public) == (name, True)
    authenticated = {
        ("GET", "/users/"): "list_users",
        ("POST", "/users/"): "create_user",
        ("GET", "/users/ann@example.org/"): "get_user",
        ("PUT", "/users/ann/"): "update_user",
        ("DELETE", "/users/ann/"): "delete_user",
        ("POST", "/users/ann/reset_password/"): "reset_password",
        ("GET", "/users-awaiting-approval/"): "list_users_awaiting_approval",
    }
    for (verb, path), name in authenticated.items():
        endpoint, _params = router.match(verb, path)
        assert (endpoint.name, endpoint.public, endpoint.channel) == (name, False, True)
    assert router.match("GET", "/users/ann@example.org/")[1] == {"username": "ann@example.org"}
    assert router.verbs("/users/ann/") == ["DELETE", "GET", "PUT"]
    assert router.verbs("/nowhere/") == []
