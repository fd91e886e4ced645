"""Rendering rewrites every file address to this gateway's URL for the file, built by the kit's
``storage_address`` on the host the client used, and speaks the frontend's news feed words (no I/O)."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import resources_pb2 as res
from tessera.event.v1 import news_feed_pb2 as news
from tessera.storage.v1 import storage_pb2 as files

from gateway.render import Renderer
from services.kit.storage.addresses import storage_address

KEY = "2c1f0b9e-3d4a-4e5f-8a7b-6c5d4e3f2a1b"
FUNCTION_KEY = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
BASE = "http://gw.test:8000"


def _addressable(address: str = "http://elsewhere/somewhere") -> res.Addressable:
    return res.Addressable(checksum="0" * 64, storage_address=address)


@pytest.mark.parametrize(
    ("message", "field", "kind"),
    [
        (res.Function(key=KEY, archive=_addressable()), "archive", files.FILE_KIND_FUNCTION_ARCHIVE),
        (res.Function(key=KEY, description=_addressable()), "description", files.FILE_KIND_FUNCTION_DESCRIPTION),
        (res.DataManager(key=KEY, opener=_addressable()), "opener", files.FILE_KIND_OPENER),
        (res.DataManager(key=KEY, description=_addressable()), "description", files.FILE_KIND_DATA_MANAGER_DESCRIPTION),
        (res.Model(key=KEY, address=_addressable()), "address", files.FILE_KIND_MODEL),
        (res.FailureReport(asset_key=KEY, logs_address=_addressable()), "logs_address", files.FILE_KIND_LOGS),
    ],
)
def test_file_addresses_are_the_kit_address_on_the_request_host(message, field, kind):
    data = Renderer(BASE + "/").message(message)
    assert data[field] == {"checksum": "0" * 64, "storage_address": storage_address(BASE, kind, KEY)}
    assert data[field]["storage_address"].startswith(BASE + "/")


def test_a_task_shows_the_logs_of_its_failure_report():
    # Its own failure's logs, whatever host stored the address...
    own = res.ComputeTask(key=KEY, logs_address=_addressable(f"http://org1.internal/logs/{KEY}/file/"))
    assert Renderer(BASE).message(own)["logs_address"]["storage_address"] == f"{BASE}/logs/{KEY}/file/"
    # ...its function's after a failed build, and its own key when the stored address names no logs file.
    build = res.ComputeTask(key=KEY, logs_address=_addressable(f"http://org1.internal/logs/{FUNCTION_KEY}/file/"))
    assert Renderer(BASE).message(build)["logs_address"]["storage_address"] == f"{BASE}/logs/{FUNCTION_KEY}/file/"
    odd = res.ComputeTask(key=KEY, logs_address=_addressable(f"http://org1.internal/model/{FUNCTION_KEY}/file/"))
    assert Renderer(BASE).message(odd)["logs_address"]["storage_address"] == f"{BASE}/logs/{KEY}/file/"
    assert Renderer(BASE).message(res.ComputeTask(key=KEY))["logs_address"] is None


def test_unset_addresses_stay_null_and_the_image_is_not_shown():
    data = Renderer(BASE).message(res.Function(key=KEY, image=_addressable()))
    assert data["archive"] is None and data["description"] is None and "image" not in data


def test_news_items_speak_the_frontends_status_words():
    renderer = Renderer(BASE)
    failed = news.NewsFeedItem(
        asset_kind=res.ASSET_COMPUTE_PLAN, asset_key=KEY, status="PLAN_STATUS_FAILED",
        detail={"first_failed_task_key": FUNCTION_KEY},
    )  # fmt: skip
    data = renderer.message(failed)
    assert (data["status"], data["asset_kind"]) == ("STATUS_FAILED", "ASSET_COMPUTE_PLAN")
    assert data["detail"] == {"first_failed_task_key": FUNCTION_KEY}
    created = renderer.message(news.NewsFeedItem(asset_kind=res.ASSET_DATA_MANAGER, status="CREATED"))
    assert created["status"] == "STATUS_CREATED"
    for word in ("CREATED", "DOING", "DONE", "CANCELED"):
        assert renderer.message(news.NewsFeedItem(status=f"PLAN_STATUS_{word}"))["status"] == f"STATUS_{word}"


def test_maps_are_printed_in_their_declared_order_and_the_order_itself_is_not_printed():
    function = res.Function(key=KEY, inputs_order=["zeta", "opener", "alpha"], metadata_order=["b", "a"])
    for name in ("alpha", "opener", "zeta"):
        function.inputs[name].kind = res.ASSET_MODEL
    function.metadata.update({"a": "1", "b": "2", "c": "3"})
    data = Renderer(BASE).message(function)
    assert list(data["inputs"]) == ["zeta", "opener", "alpha"]
    assert list(data["metadata"]) == ["b", "a", "c"]  # a key the order misses comes after, sorted
    assert list(data["outputs"]) == []
    assert not any(name.endswith("_order") for name in data)


def test_a_map_without_a_declared_order_is_printed_sorted():
    item = news.NewsFeedItem()
    item.detail.update({"zulu": "1", "alpha": "2", "mike": "3"})
    assert list(Renderer(BASE).message(item)["detail"]) == ["alpha", "mike", "zulu"]


def test_the_order_a_client_declared_is_recorded_in_every_message_of_a_request():
    from tessera.asset.v1 import asset_service_pb2 as api

    from gateway.render import record_order
    from gateway.transcoder import parse_into

    tree = {"tasks": [{"key": KEY, "metadata": {"z": "1", "a": "2"}, "outputs": {"m": {}, "b": {}}}, {"key": KEY}]}
    request = api.RegisterTasksRequest()
    parse_into(tree, request, "body")
    assert list(request.tasks[0].metadata_order) == ["z", "a"] and list(request.tasks[0].outputs_order) == ["m", "b"]
    assert list(request.tasks[1].metadata_order) == []
    function = api.RegisterFunctionRequest()
    spec = {"inputs": {"opener": {}, "datasamples": {}, "models": {}}, "metadata": {"k2": "v", "k1": "v"}}
    parse_into(spec, function, "json")
    assert list(function.inputs_order) == ["opener", "datasamples", "models"]
    assert list(function.metadata_order) == ["k2", "k1"]
    record_order({"metadata": {"k1": "v", "k2": "v"}}, function)  # what a client sends replaces the recorded order
    assert list(function.metadata_order) == ["k1", "k2"]
