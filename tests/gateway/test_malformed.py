"""Malformed requests get a 4xx with a JSON ``detail``, never a 500: bad JSON, wrong types, unknown
keys (ignored, as the SDK relies on), missing multipart parts, non-archives, oversized uploads,
unknown routes and methods."""

from __future__ import annotations

import io
import json
import uuid

import grpc
import pytest
import requests
from tessera.asset.v1 import asset_service_pb2 as api

from tests.gateway.helpers import function_archive
from tests.gateway.test_auth import headers, login, tight  # noqa: F401 - the module fixture

pytestmark = pytest.mark.timeout(60)
SPEC = {"name": "f", "permissions": {"public": True, "authorized_ids": []}, "inputs": {}, "outputs": {}}


@pytest.fixture(scope="module")
def auth(net) -> dict[str, str]:
    return headers(login(net.org1.url, net.org1.admin.username, net.org1.admin.password).json()["token"])


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> bytes:
    return function_archive(tmp_path_factory.mktemp("archive"), "train").read_bytes()


def check(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if status >= 400:
        assert isinstance(body, list) or body.get("detail"), body
    return body


def test_json_bodies(net, auth):
    url = f"{net.org1.url}/compute_plan/"
    check(requests.post(url, data=b"{not json", headers={**auth, "Content-Type": "application/json"}), 400)
    check(requests.post(url, json=[1, 2], headers=auth), 400)
    check(requests.post(url, json={"key": 3, "name": ["x"]}, headers=auth), 400)
    check(requests.post(url, json={"key": "k", "name": "n", "metadata": {"a": 1}}, headers=auth), 400)
    check(requests.post(url, json={"key": "not-a-uuid", "name": "n"}, headers=auth), 400)
    # Unknown keys are ignored (the SDK sends `tasks` here), and the creator is the user's, whatever the body says.
    key = str(uuid.uuid4())
    created = check(requests.post(url, json={"key": key, "name": "n", "tasks": [{}], "bogus": 1, "creator": "eve"},
                                  headers=auth), 201)  # fmt: skip
    assert created["creator"] == net.org1.admin.username and created["status"] == "PLAN_STATUS_CREATED"
    bulk = f"{net.org1.url}/task/bulk_create/"
    check(requests.post(bulk, json={"tasks": "nope"}, headers=auth), 400)
    check(requests.post(bulk, json={"tasks": [{"key": str(uuid.uuid4()), "compute_plan_key": str(uuid.uuid4())}]},
                        headers=auth), 404)  # fmt: skip
    check(requests.put(f"{net.org1.url}/compute_plan/{key}/", json={"name": ""}, headers=auth), 400)
    check(requests.put(f"{net.org1.url}/compute_plan/{key}/", json={"name": "ok", "extra": True}, headers=auth), 200)


def test_query_strings_and_pages(net, auth):
    url = f"{net.org1.url}/task/"
    check(requests.get(url, params={"rank": "one"}, headers=auth), 400)
    check(requests.get(url, params={"status": "STATUS_NOPE"}, headers=auth), 400)
    check(requests.get(url, params={"page": "x"}, headers=auth), 400)
    assert check(requests.get(url, params={"page": "999"}, headers=auth), 404) == {
        "detail": "Invalid page.",
        "reason": "INVALID_PAGE",
    }
    check(requests.get(url, params={"unknown_filter": "x", "ordering": "-creation_date"}, headers=auth), 200)
    check(requests.get(url, params={"ordering": "nonsense"}, headers=auth), 400)
    check(requests.get(f"{net.org1.url}/task/not-a-uuid/", headers=auth), 400)


def test_routes_and_methods(net, auth):
    check(requests.get(f"{net.org1.url}/nothing/here/", headers=auth), 404)
    response = check(requests.delete(f"{net.org1.url}/task/", headers=auth), 405)
    assert response["detail"] == 'Method "DELETE" not allowed.'
    check(requests.request("TRACE", f"{net.org1.url}/task/", headers=auth), 405)
    # A path no pattern of the framework matches (a newline) still gets the gateway's own answer.
    check(requests.get(f"{net.org1.url}/users/a%0Ab/", headers=auth), 404)
    check(requests.get(f"{net.org1.url}/task/a%0Ab/input_assets/", headers=auth), 400)


def test_openapi_document_is_served(net):
    document = requests.get(f"{net.org1.url}/openapi.json").json()
    paths = document["paths"]
    assert document["openapi"].startswith("3.")
    for path, verb in [
        ("/task/{key}/", "get"),
        ("/function/", "post"),
        ("/api-token-auth/", "post"),
        ("/model/{key}/file/", "get"),
        ("/news_feed/", "get"),
        ("/compute_plan/{key}/cancel/", "post"),
    ]:
        assert verb in paths[path], (path, verb)  # fmt: skip
    assert paths["/function/"]["post"]["requestBody"]["content"]["multipart/form-data"]
    # The key-order helpers of maps (metadata_order...) are the gateway's business, not the API's.
    assert "_order" not in json.dumps(document).replace('"ordering"', "")
    assert "metadata" in document["components"]["schemas"]["tessera.asset.v1.ComputePlan"]["properties"]
    assert (
        paths["/task/"]["get"]["security"] == [{"token": []}, {"jwt": []}] and "security" not in paths["/info/"]["get"]
    )


def _files(**parts):
    return {name: (filename, io.BytesIO(data)) for name, (filename, data) in parts.items()}


def test_multipart_uploads(net, auth, archive):
    url = f"{net.org1.url}/function/"
    spec = json.dumps(SPEC)
    description = ("description.md", b"# f")
    check(requests.post(url, json=SPEC, headers=auth), 415)  # not multipart
    check(requests.post(url, data=b"x", headers={**auth, "Content-Type": "multipart/form-data"}), 400)
    check(requests.post(url, data={"json": spec}, files=_files(file=("f.tar.gz", archive)), headers=auth), 400)
    check(requests.post(url, files=_files(file=("f.tar.gz", archive), description=description), headers=auth), 400)
    check(requests.post(url, data={"json": "{oops"}, files=_files(file=("f.tar.gz", archive), description=description),
                        headers=auth), 400)  # fmt: skip
    check(requests.post(url, data={"json": spec}, files=_files(file=("f.py", b"print(1)"), description=description),
                        headers=auth), 400)  # fmt: skip
    check(requests.post(url, data={"json": spec}, files=_files(file=("f.tar.gz", archive), description=description,
                        other=("x", b"x")), headers=auth), 400)  # fmt: skip
    both = _files(file=("f.tar.gz", archive), description=description)
    check(requests.post(url, data={"json": json.dumps({**SPEC, "name": ""})}, files=both, headers=auth), 400)
    listed = json.dumps({**SPEC, "inputs": [{"kind": "ASSET_MODEL"}]})
    both = _files(file=("f.tar.gz", archive), description=description)
    check(requests.post(url, data={"json": listed}, files=both, headers=auth), 400)
    truncated = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n' + archive[:100]
    check(requests.post(url, data=truncated, headers={**auth, "Content-Type": "multipart/form-data; boundary=b"}), 400)
    manager = f"{net.org1.url}/data_manager/"
    check(requests.post(manager, data={"json": "{}"}, files=_files(data_opener=("o.py", b"x")), headers=auth), 400)


def test_data_sample_uploads(net, auth, archive):
    url = f"{net.org1.url}/data_sample/"
    check(requests.post(url, json={"path": "/servermedias/s1", "data_manager_keys": [str(uuid.uuid4())]},
                        headers=auth), 400)  # fmt: skip
    check(requests.post(url, data={"json": json.dumps({})}, files=_files(s=("s", archive)), headers=auth), 400)
    check(requests.post(url, data={"json": json.dumps({"data_manager_keys": [str(uuid.uuid4())]})},
                        files=_files(s=("s", b"not an archive")), headers=auth), 400)  # fmt: skip
    check(requests.post(url, data={"json": json.dumps({"data_manager_keys": [str(uuid.uuid4())]})},
                        files=_files(s=("s", archive)), headers=auth), 404)  # fmt: skip
    # Without a file, the body is a url-encoded form: this endpoint takes multipart or JSON.
    check(requests.post(url, data={"json": json.dumps({"data_manager_keys": [str(uuid.uuid4())]})}, headers=auth), 415)
    link = f"{net.org1.url}/data_sample/bulk_update/"
    check(requests.post(link, data={"data_manager_keys": "x", "data_sample_keys": ["y"]}, headers=auth), 400)
    check(requests.post(link, json={"data_manager_keys": 3}, headers=auth), 400)


def test_function_images_are_not_set_through_the_api(net, auth, archive):
    response = requests.post(
        f"{net.org1.url}/function/",
        data={"json": json.dumps(SPEC)},
        files=_files(file=("f.tar.gz", archive), description=("d.md", b"# d")),
        headers=auth,
    )
    key = check(response, 201)["key"]
    image = {"checksum": "0" * 64, "storage_address": "http://evil.test/image"}
    check(requests.put(f"{net.org1.url}/function/{key}/", json={"name": "x", "image": image}, headers=auth), 400)
    check(requests.put(f"{net.org1.url}/function/{key}/", json={"name": "renamed"}, headers=auth), 200)
    assert check(requests.get(f"{net.org1.url}/function/{key}/", headers=auth), 200)["name"] == "renamed"


def test_oversized_uploads_and_bodies(net, tight, archive):  # noqa: F811 - the fixture
    auth = headers(login(tight.url, net.org1.admin.username, net.org1.admin.password).json()["token"])
    big = archive + b"\0" * 4096
    response = requests.post(
        f"{tight.url}/function/",
        data={"json": json.dumps(SPEC)},
        files=_files(file=("f.tar.gz", big), description=("d.md", b"# d")),
        headers=auth,
    )
    assert "File too large" in check(response, 413)["detail"]
    check(requests.post(f"{tight.url}/compute_plan/", json={"name": "x" * 5000}, headers=auth), 413)
    huge = json.dumps({**SPEC, "metadata": {"k": "v" * 5000}})
    both = _files(file=("f.tar.gz", archive), description=("d.md", b"# d"))
    check(requests.post(f"{tight.url}/function/", data={"json": huge}, files=both, headers=auth), 413)


# ------------------------------------------------------------------------------------------ hostile input
NUL = "a\x00b"
QUERY_FILTERS = {
    "/task/": ("owner", "worker", "compute_plan_key", "key", "tag", "function_key", "status"),
    "/compute_plan/": ("owner", "key", "name", "tag", "creator"),
    "/function/": ("owner", "key", "name"),
    "/data_manager/": ("owner", "key", "name"),
    "/model/": ("owner", "key", "compute_task_key"),
}


def test_nul_characters_are_refused_at_the_edge(net, auth):
    url = net.org1.url
    for path, names in QUERY_FILTERS.items():
        for name in names:
            body = check(requests.get(f"{url}{path}", params={name: NUL}, headers=auth), 400)
            assert "NUL" in body["detail"] and name in body["detail"], body
    check(requests.get(f"{url}/task/", params={NUL: "x"}, headers=auth), 400)
    check(requests.get(f"{url}/task/a%00b/", headers=auth), 400)
    check(requests.delete(f"{url}/active-api-tokens/", params={"id": NUL}, headers=auth), 400)
    plans = f"{url}/compute_plan/"
    for body in ({"name": NUL}, {"name": "n", "metadata": {NUL: "v"}}, {"name": "n", "metadata": {"k": NUL}},
                 {"name": "n", "tag": NUL}):  # fmt: skip
        detail = check(requests.post(plans, json={"key": str(uuid.uuid4()), **body}, headers=auth), 400)["detail"]
        assert "NUL" in detail, detail
    check(requests.post(f"{url}/task/bulk_create/", json={"tasks": [{"key": NUL}]}, headers=auth), 400)
    # Logins and user administration read the gateway's own database.
    check(requests.post(f"{url}/api-token-auth/", data={"username": NUL, "password": "p"}), 400)
    check(requests.post(f"{url}/api-token-auth/", json={"username": "u", "password": NUL}), 400)
    check(requests.post(f"{url}/me/login/", json={"username": NUL, "password": "p"}), 400)
    check(requests.post(f"{url}/api-token/", json={"note": NUL}, headers=auth), 400)
    check(requests.get(f"{url}/users/{NUL}/", headers=auth), 400)
    link = f"{url}/data_sample/bulk_update/"
    check(requests.post(link, data={"data_manager_keys": NUL, "data_sample_keys": "k"}, headers=auth), 400)


def test_the_ledger_refuses_nul_characters_and_deep_filters_too(net):
    with pytest.raises(grpc.RpcError) as listed:
        net.org1.ledger.ListTasks(api.ListTasksRequest(owner=["ok", NUL]))
    assert listed.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "owner" in listed.value.details()
    with pytest.raises(grpc.RpcError) as deep:
        net.org1.ledger.ListTasks(api.ListTasksRequest(metadata="[" * 5000 + "]" * 5000))
    assert deep.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata" in deep.value.details()
    plan = api.RegisterComputePlanRequest(key=str(uuid.uuid4()), name="n", metadata={"k": NUL})
    with pytest.raises(grpc.RpcError) as registered:
        net.org1.ledger.RegisterComputePlan(plan)
    assert registered.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "metadata" in registered.value.details()


def test_nul_characters_in_multipart_registrations(net, auth, archive):
    spec = json.dumps({**SPEC, "name": NUL})
    both = _files(file=("f.tar.gz", archive), description=("d.md", b"# d"))
    check(requests.post(f"{net.org1.url}/function/", data={"json": spec}, files=both, headers=auth), 400)
    both = _files(file=("f\x00.tar.gz", archive), description=("d.md", b"# d"))
    check(requests.post(f"{net.org1.url}/function/", data={"json": json.dumps(SPEC)}, files=both, headers=auth), 400)


def test_deep_nesting_is_refused_with_its_bound(net, auth):
    url = net.org1.url
    deep = b"[" * 100_000
    for path in ("/compute_plan/", "/task/bulk_create/", "/api-token/", "/users/", "/data_sample/bulk_update/"):
        detail = check(requests.post(f"{url}{path}", data=deep, headers={**auth, "Content-Type": "application/json"}),
                       400)["detail"]  # fmt: skip
        assert "nest" in detail, (path, detail)
    nested = '{"name": "n", "extra": ' + "[" * 40 + "]" * 40 + "}"
    headers = {**auth, "Content-Type": "application/json"}
    assert "nest" in check(requests.post(f"{url}/compute_plan/", data=nested, headers=headers), 400)["detail"]
    both = _files(file=("f.tar.gz", b"x"), description=("d.md", b"# d"))
    deep_spec = "[" * 5000 + "]" * 5000
    check(requests.post(f"{url}/function/", data={"json": deep_spec}, files=both, headers=auth), 400)
    for path in ("/compute_plan/", "/task/", "/function/", "/data_manager/"):
        response = requests.get(f"{url}{path}", params={"metadata": "[" * 5000 + "]" * 5000}, headers=auth)
        assert "metadata" in check(response, 400)["detail"]


def test_metadata_filters_must_be_the_sdk_json(net, auth):
    url = net.org1.url
    for path in ("/compute_plan/", "/task/", "/function/", "/data_manager/"):
        for raw in ("notjson", "{}", '[{"key": "k"}]', '[{"key": "k", "type": "like", "value": "v"}]', "[1]"):
            response = requests.get(f"{url}{path}", params={"metadata": raw}, headers=auth)
            assert "metadata" in check(response, 400)["detail"], (path, raw)
    good = json.dumps([{"key": "k", "type": "is", "value": "v"}, {"key": "j", "type": "exists"}])
    check(requests.get(f"{url}/compute_plan/", params={"metadata": good}, headers=auth), 200)
    check(requests.get(f"{url}/task/", params={"metadata": good}, headers=auth), 200)


def test_forms_without_boundary_or_with_too_many_fields(net, auth):
    url = net.org1.url
    multipart = {"Content-Type": "multipart/form-data"}
    check(requests.post(f"{url}/api-token-auth/", data=b"username=u", headers=multipart), 400)
    link = f"{url}/data_sample/bulk_update/"
    check(requests.post(link, data=b"data_manager_keys=u", headers={**auth, **multipart}), 400)
    many = {f"f{i}": "x" for i in range(12_000)}
    assert "fields" in check(requests.post(f"{url}/api-token-auth/", data=many), 400)["detail"]
    assert "fields" in check(requests.post(link, data=many, headers=auth), 400)["detail"]
    body = b"".join(b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nx\r\n' % i for i in range(12_000))
    headers = {"Content-Type": "multipart/form-data; boundary=b"}
    check(requests.post(f"{url}/api-token-auth/", data=body + b"--b--\r\n", headers=headers), 400)
    check(requests.post(link, data=body + b"--b--\r\n", headers={**auth, **headers}), 400)
    check(requests.post(f"{url}/function/", data=body + b"--b--\r\n", headers={**auth, **headers}), 400)


def test_bodies_of_other_types_are_unsupported(net, auth):
    url = net.org1.url
    for content_type, data in (("text/plain", b'{"name": "n"}'), ("application/xml", b"<plan><name>n</name></plan>")):
        headers = {**auth, "Content-Type": content_type}
        for path in ("/compute_plan/", "/task/bulk_create/", "/api-token/", "/users/"):
            response = requests.post(f"{url}{path}", data=data, headers=headers)
            assert content_type in check(response, 415)["detail"], (path, response.text)
        check(requests.post(f"{url}/api-token-auth/", data=data, headers=headers), 415)
        check(requests.post(f"{url}/data_sample/bulk_update/", data=data, headers=headers), 415)
    # A body-less action needs no type; the SDK's JSON and forms keep working.
    plan = check(requests.post(f"{url}/compute_plan/", json={"key": str(uuid.uuid4()), "name": "n"}, headers=auth), 201)
    check(requests.post(f"{url}/compute_plan/{plan['key']}/cancel/", headers=auth), 200)


def test_a_request_over_the_call_limit_says_the_limit(net, auth):
    task = {"key": str(uuid.uuid4()), "compute_plan_key": str(uuid.uuid4()), "metadata": {"k": "x" * (11 << 20)}}
    response = requests.post(f"{net.org1.url}/task/bulk_create/", json={"tasks": [task]}, headers=auth)
    detail = check(response, 413)["detail"]
    assert str(8 << 20) in detail, detail
