"""Unit tests of the gateway's pure parts: templates, the route table from the descriptors,
request binding, JSON rendering, the error table and the OpenAPI document (no I/O)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import timestamp_pb2
from starlette.requests import Request
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res
from tessera.event.v1 import event_service_pb2

from gateway import errors, openapi
from gateway.errors import HttpError
from gateway.httprule import TemplateError, compile_template
from gateway.render import Renderer
from gateway.router import Endpoint, Router
from gateway.routes import SERVICE_FILES
from gateway.transcoder import bind, page_links, query_tree, render_reply, rpc_routes
from services.kit.errors import FieldViolation
from services.kit.status import StatusDetails

pytestmark = pytest.mark.timeout(30)
ROUTES = {(r.verb, r.template.openapi_path()): r for r in rpc_routes(SERVICE_FILES)}
KEY = "6b7d1a0e-5c7e-4a8b-9d0c-2f1e3a4b5c6d"


def route(verb: str, path: str):
    return ROUTES[(verb, path)]


def request(path: str = "/task/", query: str = "", host: str = "gw.test:8000") -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", host.encode())],
            "server": ("gw.test", 8000),
        }
    )


# ------------------------------------------------------------------------------------------ templates
def test_templates_compile_and_match_with_or_without_the_trailing_slash():
    template = compile_template("/task/{key}/output_assets")
    assert template.variables == ("key",) and template.literal_segments == 2
    assert template.match(f"/task/{KEY}/output_assets/") == {"key": KEY}
    assert template.match(f"/task/{KEY}/output_assets") == {"key": KEY}
    assert template.match(f"/task/{KEY}/input_assets/") is None
    assert template.match("/task/a/b/output_assets/") is None
    assert template.openapi_path() == "/task/{key}/output_assets/"


def test_templates_support_the_whole_grammar():
    template = compile_template("/v1/{name=projects/*/files/**}:download")
    assert template.match("/v1/projects/p1/files/a/b%20c:download") == {"name": "projects/p1/files/a/b c"}
    assert template.match("/v1/projects/p1/other/a:download") is None
    assert compile_template("/a/*/b").match("/a/x/b/") == {}


@pytest.mark.parametrize("source", ["task", "/task/{key", "/task/{1key}", "/{a}/{a}", "/a/{b={c}}", "/a:", "/a//b"])
def test_malformed_templates_are_refused(source):
    with pytest.raises(TemplateError):
        compile_template(source)


# ------------------------------------------------------------------------------------------ route table
def test_the_route_table_holds_every_transcoded_route_of_the_contract():
    expected = {
        ("GET", "/organization/"),
        ("GET", "/data_manager/"),
        ("GET", "/data_manager/{key}/"),
        ("PUT", "/data_manager/{key}/"),
        ("GET", "/data_sample/"),
        ("GET", "/data_sample/{key}/"),
        ("GET", "/function/"),
        ("GET", "/function/{key}/"),
        ("PUT", "/function/{key}/"),
        ("POST", "/compute_plan/"),
        ("GET", "/compute_plan/"),
        ("GET", "/compute_plan/{key}/"),
        ("PUT", "/compute_plan/{key}/"),
        ("POST", "/compute_plan/{key}/cancel/"),
        ("GET", "/compute_plan/{key}/perf/"),
        ("POST", "/task/bulk_create/"),
        ("GET", "/task/"),
        ("GET", "/task/{key}/"),
        ("GET", "/task/{key}/input_assets/"),
        ("GET", "/task/{key}/output_assets/"),
        ("GET", "/model/"),
        ("GET", "/model/{key}/"),
        ("GET", "/news_feed/"),
    }
    assert expected <= set(ROUTES)
    assert route("POST", "/compute_plan/").status == 201
    assert route("POST", "/task/bulk_create/").status == 200
    assert route("GET", "/task/").page_items == "tasks" and route("GET", "/task/").upstream == "asset"
    assert route("GET", "/organization/").page_items == ""  # response_body: a bare array
    assert route("GET", "/compute_plan/{key}/perf/").page_items == "results"
    assert route("GET", "/news_feed/").upstream == "event"


def test_the_router_prefers_literals_and_answers_405():
    async def handler(request, principal, params):
        return None

    endpoints = [
        Endpoint("GET", compile_template("/task/{key}"), handler, "get"),
        Endpoint("POST", compile_template("/task/bulk_create"), handler, "bulk"),
    ]
    router = Router(endpoints)
    assert router.match("POST", "/task/bulk_create/")[0].name == "bulk"
    assert router.match("GET", f"/task/{KEY}/") == (endpoints[0], {"key": KEY})
    with pytest.raises(HttpError) as info:
        router.match("DELETE", f"/task/{KEY}/")
    assert info.value.status == 405 and info.value.headers == {"Allow": "GET"}
    with pytest.raises(HttpError) as info:
        router.match("GET", "/nothing/")
    assert info.value.status == 404
    with pytest.raises(ValueError):
        Router([*endpoints, endpoints[0]])


# ---------------------------------------------------------------------------------------------- binding
def test_query_binding_merges_repeated_params_and_keeps_the_first_singular_value():
    items = [
        ("compute_plan_key", f"{KEY},other"),
        ("ordering", "-creation_date"),
        ("page", "2"),
        ("compute_plan_key", KEY),  # the SDK re-sends its params on `next`
        ("ordering", "creation_date"),
        ("rank", "1, 2"),
        ("status", "STATUS_DONE"),
        ("metadata", '[{"key":"round_idx","type":"is","value":"0"}]'),
        ("creation_date_after", "2024-10-14T10:00:00Z"),
        ("worker_of_nothing", "ignored"),
    ]
    message = bind(route("GET", "/task/"), {}, None, items)
    assert list(message.compute_plan_key) == [KEY, "other"]
    assert message.ordering == "-creation_date" and message.page == 2
    assert list(message.rank) == [1, 2] and list(message.status) == [res.STATUS_DONE]
    assert message.metadata.startswith("[{") and message.creation_date_after.seconds == 1728900000


def test_date_range_filters_take_plain_dates_and_zone_less_times():
    day = 1727740800  # 2024-10-01T00:00:00Z
    items = [
        ("creation_date_after", "2024-10-01"),
        ("creation_date_before", "2024-10-31"),  # the whole last day
        ("start_date_after", "2024-10-01T02:00:00"),  # no zone: UTC
        ("start_date_before", "2024-10-01T04:00:00+02:00"),
        ("end_date_after", "2024-10-01T04:00:00 02:00"),  # an unencoded "+"
    ]
    message = bind(route("GET", "/task/"), {}, None, items)
    assert message.creation_date_after.seconds == day
    assert message.creation_date_before.ToJsonString() == "2024-10-31T23:59:59.999999Z"
    assert message.start_date_after.seconds == message.start_date_before.seconds == day + 7200
    assert message.end_date_after.seconds == day + 7200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("rank", "one"),
        ("page", "x"),
        ("status", "STATUS_NOPE"),
        ("creation_date_after", "yesterday"),
        ("creation_date_before", "2024-13-01"),
    ],
)
def test_malformed_query_values_are_400(name, value):
    with pytest.raises(HttpError) as info:
        bind(route("GET", "/task/"), {}, None, [(name, value)])
    assert info.value.status == 400 and name in info.value.detail


def test_body_binding_ignores_unknown_keys_and_nulls_and_path_variables_win():
    body = {"key": "from-body", "name": "plan", "tasks": [{"task_id": "x"}], "tag": None, "metadata": {"a": "b"}}
    message = bind(route("POST", "/compute_plan/"), {}, body, [("name", "from-query")])
    assert (message.key, message.name, message.tag, dict(message.metadata)) == ("from-body", "plan", "", {"a": "b"})
    renamed = bind(route("PUT", "/compute_plan/{key}/"), {"key": KEY}, {"key": "other", "name": "n"}, [])
    assert (renamed.key, renamed.name) == (KEY, "n")
    tasks = bind(
        route("POST", "/task/bulk_create/"),
        {},
        {"tasks": [{"key": KEY, "rank": None, "tag": None, "metadata": None, "inputs": [{"identifier": "opener",
                    "asset_key": KEY, "parent_task_key": None, "parent_task_output_identifier": None}]}]},
        [],
    )  # fmt: skip
    assert tasks.tasks[0].inputs[0].asset_key == KEY and not tasks.tasks[0].HasField("rank")
    for bad in ([1, 2], {"key": 3, "name": ["x"]}, {"metadata": {"a": 1}}):
        with pytest.raises(HttpError) as info:
            bind(route("POST", "/compute_plan/"), {}, bad, [])
        assert info.value.status == 400


def test_query_tree_binds_booleans_and_skips_bound_fields():
    descriptor = event_service_pb2.ListNewsFeedRequest.DESCRIPTOR
    assert query_tree(descriptor, [("important_news_only", "true"), ("page", "3")], {"page"}) == {
        "important_news_only": True
    }
    with pytest.raises(HttpError):
        query_tree(descriptor, [("important_news_only", "maybe")], set())


# -------------------------------------------------------------------------------------------- rendering
def _task() -> res.ComputeTask:
    stamp = timestamp_pb2.Timestamp(seconds=1728900000)
    return res.ComputeTask(
        key=KEY,
        owner="MyOrg1MSP",
        compute_plan_key=KEY,
        function_key=KEY,
        status=res.STATUS_WAITING_FOR_PARENT_TASKS,
        worker="MyOrg1MSP",
        creation_date=stamp,
        inputs=[
            res.ComputeTaskInput(identifier="opener", asset_key=KEY),
            res.ComputeTaskInput(
                identifier="model",
                parent_task_output=res.ParentTaskOutputRef(parent_task_key=KEY, output_identifier="m"),
            ),
        ],
        function=res.Function(
            key=KEY,
            archive=res.Addressable(checksum="0" * 64, storage_address="http://elsewhere/x"),
            description=res.Addressable(checksum="1" * 64, storage_address="http://elsewhere/y"),
            image=res.Addressable(checksum="2" * 64, storage_address="http://elsewhere/z"),
        ),
    )


def test_tasks_render_as_the_sdk_reads_them():
    data = Renderer("http://gw.test:8000/").message(_task())
    assert data["inputs"] == [
        {"identifier": "opener", "asset_key": KEY, "parent_task_key": None, "parent_task_output_identifier": None},
        {"identifier": "model", "asset_key": None, "parent_task_key": KEY, "parent_task_output_identifier": "m"},
    ]
    assert data["tag"] == "" and data["metadata"] == {} and data["rank"] == 0
    assert data["error_type"] is None and data["start_date"] is None and data["duration"] is None
    assert data["creation_date"] == "2024-10-14T10:00:00Z"
    assert data["function"]["archive"]["storage_address"] == f"http://gw.test:8000/function/{KEY}/file/"
    assert data["function"]["description"]["storage_address"] == f"http://gw.test:8000/function/{KEY}/description/"
    assert "image" not in data["function"]


def test_output_assets_and_models_render_their_asset():
    renderer = Renderer("http://gw.test")
    model = res.Model(key=KEY, compute_task_key=KEY, address=res.Addressable(checksum="0" * 64, storage_address="x"))
    data = renderer.message(res.OutputAsset(identifier="model", kind=res.ASSET_MODEL, model=model))
    assert data["asset"]["address"]["storage_address"] == f"http://gw.test/model/{KEY}/file/"
    assert "model" not in data and "performance" not in data
    performance = res.Performance(compute_task_key=KEY, performance_value=0.9)
    data = renderer.message(res.OutputAsset(identifier="acc", kind=res.ASSET_PERFORMANCE, performance=performance))
    assert data["kind"] == "ASSET_PERFORMANCE" and data["asset"]["performance_value"] == pytest.approx(0.9)
    assert renderer.message(res.Model(key=KEY))["address"] is None  # a disabled model


def test_pages_render_in_the_drf_envelope_with_absolute_links():
    reply = api.ListTasksResponse(tasks=[_task()], next_page_token="t", total_size=250)
    message = api.ListTasksRequest(page=2)
    data = render_reply(
        route("GET", "/task/"), request(query="compute_plan_key=a&page=2&compute_plan_key=a"), message, reply
    )
    assert data["count"] == 250 and len(data["results"]) == 1
    assert data["next"] == "http://gw.test:8000/task/?compute_plan_key=a&compute_plan_key=a&page=3"
    assert data["previous"] == "http://gw.test:8000/task/?compute_plan_key=a&compute_plan_key=a"
    assert page_links(request(query="page=1"), 1, False) == (None, None)
    organizations = api.ListOrganizationsResponse(organizations=[res.Organization(id="o", is_current=True)])
    bare = render_reply(route("GET", "/organization/"), request("/organization/"), message, organizations)
    assert bare == [{"id": "o", "address": "", "creation_date": None, "is_current": True}]


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.OUT_OF_RANGE, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.CANCELLED, 408),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
    ],
)
def test_the_error_table_follows_the_contract(code, status):
    assert errors.http_status(StatusDetails(code=code, message="m", reason=code.name)) == status


def test_error_reasons_and_bodies():
    exhausted = grpc.StatusCode.RESOURCE_EXHAUSTED
    assert errors.http_status(StatusDetails(exhausted, "limit", reason="RESOURCE_EXHAUSTED")) == 429
    assert errors.http_status(StatusDetails(exhausted, "Received message larger than max")) == 413
    assert errors.http_status(StatusDetails(grpc.StatusCode.FAILED_PRECONDITION, "gone", reason="GONE")) == 410
    assert errors.http_status(StatusDetails(exhausted, "too large", reason="FILE_TOO_LARGE")) == 413
    conflict = StatusDetails(grpc.StatusCode.ALREADY_EXISTS, "exists", "ALREADY_EXISTS", {"keys": f"{KEY},b"})
    assert errors.error_body(conflict)["key"] == [KEY, "b"]
    assert errors.error_body(conflict, list_conflicts=True) == [
        {"key": KEY, "detail": "exists"},
        {"key": "b", "detail": "exists"},
    ]
    single = StatusDetails(grpc.StatusCode.ALREADY_EXISTS, "exists", "ALREADY_EXISTS", {"keys": KEY})
    assert errors.error_body(single) == {"detail": "exists", "key": KEY, "reason": "ALREADY_EXISTS"}
    invalid = StatusDetails(grpc.StatusCode.INVALID_ARGUMENT, "name: bad", violations=[FieldViolation("name", "bad")])
    assert errors.error_body(invalid)["errors"] == [{"field": "name", "description": "bad"}]


# ---------------------------------------------------------------------------------------------- openapi
def test_the_openapi_document_is_generated_from_the_descriptors():
    async def handler(request, principal, params):
        return None

    endpoints = [Endpoint(r.verb, r.template, handler, r.method.name, rpc=r) for r in ROUTES.values()]
    document = openapi.document(endpoints, "0.1.0")
    tasks = document["paths"]["/task/"]["get"]
    assert tasks["operationId"] == "ListTasks" and tasks["x-grpc-method"] == "tessera.asset.v1.AssetService.ListTasks"
    assert set(tasks["responses"]["200"]["content"]["application/json"]["schema"]["properties"]) == {
        "count",
        "next",
        "previous",
        "results",
    }
    parameters = {p["name"]: p for p in tasks["parameters"]}
    assert parameters["compute_plan_key"]["schema"]["type"] == "array" and "page" in parameters
    create = document["paths"]["/compute_plan/"]["post"]
    assert "201" in create["responses"] and "requestBody" in create
    schemas = document["components"]["schemas"]
    assert schemas["tessera.asset.v1.ComputeTaskStatus"]["enum"][0] == "STATUS_UNKNOWN"
    if openapi.DESCRIPTOR_SET.exists():  # comments come from make gen's descriptor set
        assert "summary" in tasks and "description" in schemas["tessera.asset.v1.ComputeTask"]
