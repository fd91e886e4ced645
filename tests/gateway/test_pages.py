"""The routes only the web frontend's pages read (frontend contract §4), through the page's own client:
plan metadata keys, a plan's tasks, the workflow graph and the CSV export of performances, on a plan
seeded with the real SDK and executed on the ledger as a worker would."""

from __future__ import annotations

import csv
import io
import time
import uuid
from types import SimpleNamespace

import pytest
from substra.sdk import schemas

from tests.gateway.browser import Browser
from tests.gateway.helpers import PUBLIC, client, dataset_spec, execute, fail, files, function_spec, make_ready

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def plan(net, tmp_path_factory):
    """train → predict → evaluate on MyOrg1MSP, executed, with an accuracy of 0.75."""
    folder = tmp_path_factory.mktemp("pages")
    paths = files(folder)
    sdk = client(net.org1)
    dm = sdk.add_dataset(dataset_spec(paths, name="pages-ds"))
    sample = sdk.add_data_sample(schemas.DataSampleSpec(path=paths["sample1"], data_manager_keys=[dm]), local=True)
    functions = {
        role: sdk.add_function(function_spec(folder, paths, role)) for role in ("train", "predict", "evaluate")
    }
    for key in functions.values():
        make_ready(net.org1, key)
    data = [
        schemas.InputRef(identifier="opener", asset_key=dm),
        schemas.InputRef(identifier="datasamples", asset_key=sample),
    ]
    out = schemas.ComputeTaskOutputSpec(permissions=PUBLIC, transient=False)
    t1, t2, t3 = (str(uuid.uuid4()) for _ in range(3))

    def parent(identifier: str, task: str) -> schemas.InputRef:
        return schemas.InputRef(identifier=identifier, parent_task_key=task, parent_task_output_identifier=identifier)

    tasks = [
        schemas.ComputePlanTaskSpec(task_id=t1, function_key=functions["train"], worker=net.org1.id,
                                    metadata={"round_idx": "1"}, inputs=data, outputs={"model": out}),
        schemas.ComputePlanTaskSpec(task_id=t2, function_key=functions["predict"], worker=net.org1.id,
                                    metadata={"round_idx": "1"}, inputs=[*data, parent("model", t1)],
                                    outputs={"predictions": out}),
        schemas.ComputePlanTaskSpec(task_id=t3, function_key=functions["evaluate"], worker=net.org1.id,
                                    metadata={"round_idx": "1"}, inputs=[*data, parent("predictions", t2)],
                                    outputs={"accuracy": out}),
    ]  # fmt: skip
    key = str(uuid.uuid4())
    metadata = {"hospital": 'north, "A"', "epochs": "3"}
    sdk.add_compute_plan(
        schemas.ComputePlanSpec(key=key, name="pages-plan", tag="pages", metadata=metadata, tasks=tasks)
    )
    execute(net.org1, t1, model=b"m")
    execute(net.org1, t2, model=b"p", output="predictions")
    execute(net.org1, t3, perf=("accuracy", 0.75))
    sdk.logout()
    return SimpleNamespace(key=key, tasks=[t1, t2, t3], functions=functions, metadata=metadata, dm=dm, sample=sample)


@pytest.fixture
def page(net):
    with Browser(net.org1.url) as browser:
        assert browser.login(net.org1.admin.username, net.org1.admin.password).status_code == 200
        yield browser


def test_compute_plan_metadata_lists_every_key(page, plan):
    keys = page.get("/compute_plan_metadata/").json()
    assert isinstance(keys, list) and {"hospital", "epochs"} <= set(keys) and keys == sorted(keys)


def test_a_plans_tasks_with_the_task_filters(page, plan):
    listed = page.get(f"/compute_plan/{plan.key}/task/", params={"ordering": "-rank", "page_size": 2})
    body = listed.json()
    assert listed.status_code == 200 and body["count"] == 3
    assert [t["key"] for t in body["results"]] == [plan.tasks[2], plan.tasks[1]]
    assert f"/compute_plan/{plan.key}/task/" in body["next"]
    assert [t["key"] for t in page.get(body["next"]).json()["results"]] == [plan.tasks[0]]
    # The path wins over a compute_plan_key in the query.
    other = page.get(f"/compute_plan/{plan.key}/task/", params={"compute_plan_key": str(uuid.uuid4())}).json()
    assert other["count"] == 3
    done = page.get(f"/compute_plan/{plan.key}/task/", params={"status": "STATUS_DONE", "rank": "0,2"}).json()
    assert {t["key"] for t in done["results"]} == {plan.tasks[0], plan.tasks[2]}
    dated = page.get(f"/compute_plan/{plan.key}/task/", params={"creation_date_after": "2000-01-01",
                                                                 "creation_date_before": "2999-12-31"})  # fmt: skip
    assert dated.json()["count"] == 3
    assert page.get(f"/compute_plan/{plan.key}/task/", params={"rank": "x"}).status_code == 400
    assert page.get(f"/compute_plan/{uuid.uuid4()}/task/").json()["count"] == 0


def test_the_workflow_graph_has_a_node_per_task_and_an_edge_per_link(page, plan):
    graph = page.get(f"/compute_plan/{plan.key}/workflow_graph/").json()
    t1, t2, t3 = plan.tasks
    assert [(t["key"], t["rank"], t["function_name"], t["status"]) for t in graph["tasks"]] == [
        (t1, 0, "train", "STATUS_DONE"),
        (t2, 1, "predict", "STATUS_DONE"),
        (t3, 2, "evaluate", "STATUS_DONE"),
    ]
    evaluate = graph["tasks"][2]
    assert evaluate["inputs_specs"] == [
        {"identifier": "datasamples", "kind": "ASSET_DATA_SAMPLE"},
        {"identifier": "opener", "kind": "ASSET_DATA_MANAGER"},
        {"identifier": "predictions", "kind": "ASSET_MODEL"},
    ]
    assert evaluate["outputs_specs"] == [{"identifier": "accuracy", "kind": "ASSET_PERFORMANCE"}]
    assert evaluate["worker"] == "MyOrg1MSP"
    assert graph["edges"] == [
        {"source_task_key": t1, "source_output_identifier": "model", "target_task_key": t2,
         "target_input_identifier": "model"},
        {"source_task_key": t2, "source_output_identifier": "predictions", "target_task_key": t3,
         "target_input_identifier": "predictions"},
    ]  # fmt: skip
    missing = page.get(f"/compute_plan/{uuid.uuid4()}/workflow_graph/")
    assert missing.status_code == 404 and missing.json()["detail"]


def test_the_performance_export_is_a_csv(page, plan):
    response = page.get("/performance/export/", params={"key": plan.key, "metadata_columns": "hospital,epochs,none"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="compute_plans.csv"'
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == [
        "compute_plan_key", "compute_plan_name", "compute_plan_tag", "compute_plan_status", "compute_plan_start_date",
        "compute_plan_end_date", "hospital", "epochs", "none", "function_name", "worker", "task_rank", "task_round",
        "performance"]  # fmt: skip
    [row] = rows[1:]
    assert row[:4] == [plan.key, "pages-plan", "pages", "PLAN_STATUS_DONE"]
    assert row[4].endswith("Z") and row[5].endswith("Z")
    assert row[6:] == ['north, "A"', "3", "", "evaluate", "MyOrg1MSP", "2", "1", "0.75"]
    # Another identifier selects nothing; a bad filter is a 400 before any CSV.
    only = page.get("/performance/export/", params={"key": plan.key, "identifier": "loss"}).text
    assert len(list(csv.reader(io.StringIO(only)))) == 1
    assert page.get("/performance/export/", params={"status": "NOPE"}).status_code == 400
    # Without a key: every visible plan, this one included.
    everything = list(csv.reader(io.StringIO(page.get("/performance/export/").text)))
    assert plan.key in {r[0] for r in everything[1:]}


def test_a_task_s_input_assets_by_a_list_of_kinds(page, plan):
    evaluate = plan.tasks[2]  # opener, datasamples, predictions

    def kinds(**params) -> list[str]:
        response = page.get(f"/task/{evaluate}/input_assets/", params=params)
        assert response.status_code == 200, response.text
        return [item["kind"] for item in response.json()["results"]]

    assert sorted(kinds()) == ["ASSET_DATA_MANAGER", "ASSET_DATA_SAMPLE", "ASSET_MODEL"]
    assert kinds(kind="ASSET_MODEL") == ["ASSET_MODEL"]
    assert sorted(kinds(kind="ASSET_MODEL,ASSET_DATA_MANAGER")) == ["ASSET_DATA_MANAGER", "ASSET_MODEL"]
    assert sorted(kinds(kind="ASSET_DATA_SAMPLE, ASSET_MODEL", identifier="predictions")) == ["ASSET_MODEL"]
    bad = page.get(f"/task/{evaluate}/input_assets/", params={"kind": "ASSET_MODEL,NOPE"})
    assert bad.status_code == 400 and "NOPE" in bad.json()["detail"]
    assert page.get(f"/task/{uuid.uuid4()}/input_assets/", params={"kind": "ASSET_MODEL"}).status_code == 404


def _names(page, path: str, ordering: str, field: str = "name") -> list[str]:
    response = page.get(path, params={"ordering": ordering, "page_size": 100})
    assert response.status_code == 200, (path, ordering, response.text)
    return [item[field] for item in response.json()["results"]]


@pytest.mark.parametrize("path", ["/data_manager/", "/function/", "/compute_plan/"])
def test_lists_order_by_name_and_owner(page, plan, path):
    for field in ("name", "owner"):
        ascending = _names(page, path, field, field)
        assert ascending == sorted(ascending) and len(ascending) >= 1, (path, field)
        assert _names(page, path, f"-{field}", field) == sorted(ascending, reverse=True), (path, field)
    bad = page.get(path, params={"ordering": "-nope"})
    assert bad.status_code == 400 and "ordering" in bad.json()["detail"]


def test_a_plan_s_tasks_order_by_the_columns_of_its_page(page, plan):
    path = f"/compute_plan/{plan.key}/task/"
    assert _names(page, path, "-rank", "key") == plan.tasks[::-1]
    assert _names(page, path, "owner", "key") == plan.tasks  # one owner: then by registration
    assert _names(page, path, "function__name", "key") == [plan.tasks[2], plan.tasks[1], plan.tasks[0]]
    for ordering in ("status", "-start_date", "end_date", "duration", "worker", "creation_date"):
        assert sorted(_names(page, path, ordering, "key")) == sorted(plan.tasks), ordering
    bad = page.get(path, params={"ordering": "name"})
    assert bad.status_code == 400 and "ordering" in bad.json()["detail"]


def test_the_news_feed_names_the_first_failed_task_of_a_failed_plan(net, page, plan):
    """Two tasks of one plan fail, the second registered first: the feed's FAILED item names the one
    that failed first, in the frontend's words."""
    sdk = client(net.org1)
    data = [
        schemas.InputRef(identifier="opener", asset_key=plan.dm),
        schemas.InputRef(identifier="datasamples", asset_key=plan.sample),
    ]
    out = {"model": schemas.ComputeTaskOutputSpec(permissions=PUBLIC, transient=False)}
    early, late = str(uuid.uuid4()), str(uuid.uuid4())
    key = str(uuid.uuid4())
    sdk.add_compute_plan(
        schemas.ComputePlanSpec(
            key=key,
            name="failing-plan",
            tasks=[
                schemas.ComputePlanTaskSpec(
                    task_id=task, function_key=plan.functions["train"], worker=net.org1.id, inputs=data, outputs=out
                )
                for task in (early, late)
            ],
        )
    )
    sdk.logout()
    fail(net.org1, late, b"first failure")
    fail(net.org1, early, b"second failure")
    deadline = time.monotonic() + 15
    while True:
        feed = page.get("/news_feed/", params={"page_size": 100}).json()["results"]
        items = [item for item in feed if item["asset_key"] == key]
        failed = [i for i in items if i["status"] == "STATUS_FAILED"]
        if failed or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(failed) == 1, items
    assert failed[0]["detail"] == {"first_failed_task_key": late}
    assert failed[0]["asset_kind"] == "ASSET_COMPUTE_PLAN" and failed[0]["name"] == "failing-plan"
    assert {i["status"] for i in items} <= {"STATUS_CREATED", "STATUS_DOING", "STATUS_FAILED"}
