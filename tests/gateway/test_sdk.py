"""The real ``substra==1.0.0`` SDK, in remote mode, against two organizations' gateways.

The sequence of contract §10, in order: login, info and organizations, a dataset with three
uploaded samples, three functions, a compute plan of three tasks sent through
``/task/bulk_create/``; then, with the workers' steps simulated on the ledger (compute does not
run tasks here yet), waits, performances, output and input assets, model and log downloads;
listings filtered and paged over several pages, renames, cancel, and the error mapping.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import substra
from substra.sdk import exceptions, models, schemas
from tessera.asset.v1 import asset_service_pb2 as api

from tests.gateway.helpers import (
    PUBLIC,
    client,
    dataset_spec,
    execute,
    fail,
    fail_build,
    files,
    function_spec,
    make_ready,
)

pytestmark = pytest.mark.timeout(120)


def _output(transient: bool = False) -> schemas.ComputeTaskOutputSpec:
    return schemas.ComputeTaskOutputSpec(permissions=PUBLIC, transient=transient)


def _data(dm: str, *samples: str) -> list[schemas.InputRef]:
    return [schemas.InputRef(identifier="opener", asset_key=dm)] + [
        schemas.InputRef(identifier="datasamples", asset_key=s) for s in samples
    ]


def _parent(identifier: str, task: str, output: str) -> schemas.InputRef:
    return schemas.InputRef(identifier=identifier, parent_task_key=task, parent_task_output_identifier=output)


@pytest.fixture(scope="module")
def world(net, tmp_path_factory):
    """§10 steps 1-10: everything registered through the SDK by MyOrg1MSP's admin."""
    folder = tmp_path_factory.mktemp("sdk")
    paths = files(folder)
    c1, c2 = client(net.org1), client(net.org2)
    org1 = c1.organization_info().organization_id
    dm = c1.add_dataset(dataset_spec(paths))
    ds1 = c1.add_data_sample(schemas.DataSampleSpec(path=paths["sample1"], data_manager_keys=[dm]), local=True)
    ds2, ds3 = c1.add_data_samples(
        schemas.DataSampleSpec(paths=[paths["sample2"], paths["sample3"]], data_manager_keys=[dm]), local=True
    )
    functions = {role: c1.add_function(function_spec(folder, paths, role)) for role in ("train", "predict", "evaluate")}
    for key in functions.values():
        make_ready(net.org1, key)
    t1, t2, t3 = (str(uuid.uuid4()) for _ in range(3))
    tasks = [
        schemas.ComputePlanTaskSpec(
            task_id=t1,
            function_key=functions["train"],
            worker=org1,
            metadata={"round_idx": "0"},
            inputs=_data(dm, ds1),
            outputs={"model": _output()},
        ),
        schemas.ComputePlanTaskSpec(
            task_id=t2,
            function_key=functions["predict"],
            worker=org1,
            metadata={"round_idx": "0"},
            inputs=[*_data(dm, ds2), _parent("model", t1, "model")],
            outputs={"predictions": _output(transient=True)},
        ),
        schemas.ComputePlanTaskSpec(
            task_id=t3,
            function_key=functions["evaluate"],
            worker=org1,
            tag="test",
            metadata={"round_idx": "0"},
            inputs=[*_data(dm, ds2), _parent("predictions", t2, "predictions")],
            outputs={"accuracy": _output()},
        ),
    ]
    plan = c1.add_compute_plan(
        schemas.ComputePlanSpec(
            key=str(uuid.uuid4()), name="demo-cp", tag="demo", metadata={"round": "1"}, tasks=tasks
        ),
        auto_batching=True,
        batch_size=2,  # two bulk_create batches, in rank order
    )
    yield SimpleNamespace(
        c1=c1, c2=c2, org1=org1, dm=dm, samples=[ds1, ds2, ds3], functions=functions,
        tasks=[t1, t2, t3], plan=plan, paths=paths, folder=folder, models={},
    )  # fmt: skip
    c1.logout()
    c2.logout()


def test_login_organization_info_and_organizations(world, net):
    info = world.c1.organization_info()
    assert info.organization_id == "MyOrg1MSP" and info.channel == "mychannel"
    assert info.config.model_export_enabled is True
    assert str(info.host).rstrip("/") == net.org1.url
    assert isinstance(info.orchestrator_version, str) and info.version
    organizations = {o.id: o.is_current for o in world.c1.list_organization()}
    assert organizations == {"MyOrg1MSP": True, "MyOrg2MSP": False}
    assert {o.id: o.is_current for o in world.c2.list_organization()} == {"MyOrg1MSP": False, "MyOrg2MSP": True}


def test_dataset_and_data_samples(world, net, tmp_path):
    dataset = world.c1.get_dataset(world.dm)
    # The ledger keeps the files' addresses on the owner's gateway (storage's answer to the upload).
    stored = net.org1.ledger.GetDataManager(api.GetDataManagerRequest(key=world.dm)).data_manager
    assert stored.opener.storage_address == f"{net.org1.url}/data_manager/{world.dm}/opener/"
    assert stored.description.storage_address == f"{net.org1.url}/data_manager/{world.dm}/description/"
    assert dataset.name == "demo-ds" and dataset.owner == "MyOrg1MSP" and dataset.metadata == {"k": "v"}
    assert set(dataset.data_sample_keys) == set(world.samples)
    assert dataset.permissions.process.public and dataset.logs_permission.public
    assert str(dataset.opener.storage_address).endswith(f"/data_manager/{world.dm}/opener/")
    opener = world.c1.download_dataset(world.dm, tmp_path)
    assert opener.read_text() == world.paths["opener"].read_text()
    assert world.c1.describe_dataset(world.dm) == world.paths["description"].read_text()
    # Another organization sees it, and reads the files through its own gateway (the owner's storage serves them).
    assert world.c2.describe_dataset(world.dm) == world.paths["description"].read_text()
    assert [d.key for d in world.c1.list_dataset(filters={"name": "demo"})] == [world.dm]
    sample = world.c1.get_data_sample(world.samples[0])
    assert sample.data_manager_keys == [world.dm] and sample.path is None
    listed = world.c1.list_data_sample(filters={"dataset_key": [world.dm]})
    assert {s.key for s in listed} == set(world.samples)


def test_link_dataset_with_data_samples(world):
    other = world.c1.add_dataset(dataset_spec(world.paths, name="second-ds"))
    linked = world.c1.link_dataset_with_data_samples(other, world.samples[:2])
    assert linked == world.samples[:2]
    assert set(world.c1.get_dataset(other).data_sample_keys) == set(world.samples[:2])
    assert set(world.c1.get_data_sample(world.samples[0]).data_manager_keys) == {world.dm, other}


def test_functions(world, tmp_path):
    function = world.c1.get_function(world.functions["train"])
    assert function.status == models.FunctionStatus.ready
    assert {i.identifier for i in function.inputs} == {"opener", "datasamples"}
    assert [(o.identifier, o.kind) for o in function.outputs] == [("model", "ASSET_MODEL")]
    assert world.c1.wait_function(function.key).status == models.FunctionStatus.ready
    archive = world.c1.download_function(function.key, tmp_path)
    assert archive.read_bytes() == (world.folder / "train.tar.gz").read_bytes()
    assert world.c1.describe_function(function.key) == world.paths["description"].read_text()
    # A peer downloads the archive through its own gateway: the file comes from the owner's storage.
    (tmp_path / "peer").mkdir()
    peer_archive = world.c2.download_function(function.key, tmp_path / "peer")
    assert peer_archive.read_bytes() == archive.read_bytes()
    names = {f.name for f in world.c1.list_function(filters={"name": "train"})}
    assert names == {"train"}


def test_large_files_stream_both_ways(world, net, tmp_path):
    """A 6 MiB archive goes to storage in chunks and comes back identical (and with its size)."""
    payload = os.urandom(6 << 20)
    path = tmp_path / "big.tar"
    with tarfile.open(path, "w") as archive:
        for name, data in (("Dockerfile", b'ENTRYPOINT ["python3", "function.py"]\n'), ("weights.bin", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    spec = function_spec(world.folder, world.paths, "train")
    key = world.c1.add_function(spec.model_copy(update={"file": path, "name": "big"}))
    url = world.c1.get_function(key).archive.storage_address
    headers = {"Authorization": world.c1._backend._client._headers["Authorization"]}
    response = requests.get(str(url), headers=headers, timeout=60)
    assert response.status_code == 200 and response.content == path.read_bytes()
    assert int(response.headers["content-length"]) == path.stat().st_size
    assert response.headers["content-disposition"].startswith("attachment;")


def test_compute_plan_and_tasks_as_registered(world):
    plan = world.plan
    assert plan.status == models.ComputePlanStatus.created and plan.task_count == 0 and plan.tag == "demo"
    plan = world.c1.get_compute_plan(plan.key)
    assert plan.task_count == 3 and plan.creator == "org1-admin" and plan.metadata == {"round": "1"}
    t1, t2, t3 = (world.c1.get_task(key) for key in world.tasks)
    assert (t1.rank, t2.rank, t3.rank) == (0, 1, 2)
    assert t1.status == models.ComputeTaskStatus.waiting_for_executor_slot
    assert t2.status == models.ComputeTaskStatus.waiting_for_parent_tasks
    assert t1.function.key == world.functions["train"] and t1.tag == "" and t3.tag == "test"
    assert t1.metadata == {"round_idx": "0"} and t1.error_type is None and t1.start_date is None
    parent = next(i for i in t2.inputs if i.identifier == "model")
    assert parent.parent_task_key == t1.key and parent.parent_task_output_identifier == "model"
    assert parent.asset_key is None
    assert t2.outputs["predictions"].is_transient is True
    listed = world.c1.list_task(filters={"compute_plan_key": [plan.key], "rank": [1, 2]}, order_by="creation_date")
    assert {t.key for t in listed} == {t2.key, t3.key}
    by_status = world.c1.list_task(
        filters={"compute_plan_key": [plan.key], "status": ["STATUS_WAITING_FOR_PARENT_TASKS"]}
    )
    assert {t.key for t in by_status} == {t2.key, t3.key}


def test_execution_outputs_performances_and_models(world, net, tmp_path):
    """§10 steps 11-17, the workers' steps simulated on the ledger."""
    t1, t2, t3 = world.tasks
    model = execute(net.org1, t1, model=b"weights of the trained model")
    predictions = execute(net.org1, t2, model=b"predictions", output="predictions")
    execute(net.org1, t3, perf=("accuracy", 0.9))
    world.models.update(model=model, predictions=predictions)
    assert world.c1.wait_task(t3, timeout=10).status == models.ComputeTaskStatus.done
    plan = world.c1.wait_compute_plan(world.plan.key, timeout=10)
    assert plan.status == models.ComputePlanStatus.done and plan.done_count == 3
    performances = world.c1.get_performances(world.plan.key)
    assert performances.performance == [pytest.approx(0.9)] and performances.task_key == [t3]
    assert performances.round_idx == [0] and performances.identifier == ["accuracy"]
    outputs = world.c1.list_task_output_assets(t3)
    assert [(o.identifier, o.kind) for o in outputs] == [("accuracy", "ASSET_PERFORMANCE")]
    assert outputs[0].asset == pytest.approx(0.9)
    asset = world.c1.get_task_output_asset(t1, "model")
    assert asset.asset.key == model and asset.asset.compute_task_key == t1
    path = world.c1.download_model_from_task(t1, "model", tmp_path)
    assert path.read_bytes() == b"weights of the trained model"
    inputs = world.c1.list_task_input_assets(t2)
    kinds = sorted(i.kind for i in inputs)
    assert kinds == ["ASSET_DATA_MANAGER", "ASSET_DATA_SAMPLE", "ASSET_MODEL"]
    assert [i.asset.key for i in inputs if i.kind == "ASSET_MODEL"] == [model]
    assert [m.key for m in world.c1.list_model(filters={"compute_task_key": [t1]})] == [model]
    assert world.c1.get_model(model).address is not None


def test_disabled_model_download_is_410(world, net, tmp_path):
    net.org1.ledger.DisableOutput(api.DisableOutputRequest(compute_task_key=world.tasks[1], identifier="predictions"))
    key = world.models["predictions"]
    assert world.c1.get_model(key).address is None
    with pytest.raises(exceptions.HTTPError) as info:
        world.c1.download_model(key, tmp_path)
    assert info.value.status_code == 410


def test_profiling(world, net):
    t1 = world.tasks[0]
    for step, duration in (("prepare_inputs", 1_500_000), ("task_execution", 61_000_000)):
        net.org1.ledger.RegisterProfilingStep(
            api.RegisterProfilingStepRequest(asset_key=t1, step=step, duration=duration)
        )
    train = world.functions["train"]
    net.org1.ledger.RegisterProfilingStep(
        api.RegisterProfilingStepRequest(asset_key=train, step="build_image", duration=3)
    )
    headers = {"Authorization": world.c1._backend._client._headers["Authorization"]}
    one = requests.get(f"{net.org1.url}/task_profiling/{t1}/", headers=headers, timeout=10).json()
    assert one["execution_rundown"] == [  # integer microseconds (frontend contract §4)
        {"step": "prepare_inputs", "duration": 1_500_000},
        {"step": "task_execution", "duration": 61_000_000},
    ]
    assert one["task_duration"] == 62_500_000
    listed = requests.get(f"{net.org1.url}/task_profiling/", headers=headers, timeout=10).json()["results"]
    assert [item["compute_task_key"] for item in listed] == [t1]
    build = requests.get(f"{net.org1.url}/function/{train}/profiling/", headers=headers, timeout=10).json()
    assert build["function_key"] == train
    assert build["execution_rundown"] == [{"step": "build_image", "duration": 3}] and build["duration"] == 3
    missing = requests.get(f"{net.org1.url}/task_profiling/{world.tasks[2]}/", headers=headers, timeout=10)
    assert missing.status_code == 404


def test_news_feed(world, net):
    """The event service's feed of the plan and the dataset, paginated by the gateway, in the frontend's
    words (STATUS_*, frontend contract §4)."""
    headers = {"Authorization": world.c1._backend._client._headers["Authorization"]}
    deadline = time.monotonic() + 15
    while True:
        feed = requests.get(f"{net.org1.url}/news_feed/", headers=headers, timeout=10).json()
        seen = {(item["asset_key"], item["status"]) for item in feed["results"]}
        if (world.plan.key, "STATUS_DONE") in seen or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (world.dm, "STATUS_CREATED") in seen and (world.plan.key, "STATUS_CREATED") in seen
    assert (world.plan.key, "STATUS_DONE") in seen
    assert {item["asset_kind"] for item in feed["results"]} <= {"ASSET_COMPUTE_PLAN", "ASSET_DATA_MANAGER"}
    assert feed["count"] >= len(feed["results"]) and feed["results"][0]["timestamp"] >= feed["results"][-1]["timestamp"]
    important = requests.get(
        f"{net.org1.url}/news_feed/", params={"important_news_only": "true"}, headers=headers, timeout=10
    ).json()["results"]
    assert important and all(item["status"] in ("STATUS_DONE", "STATUS_FAILED", "STATUS_CANCELED")
                             for item in important)  # fmt: skip


def test_lists_follow_next_over_several_pages(world):
    plan = schemas.ComputePlanSpec(
        key=str(uuid.uuid4()),
        name="wide-plan",
        tasks=[
            schemas.ComputePlanTaskSpec(
                task_id=str(uuid.uuid4()),
                function_key=world.functions["train"],
                worker=world.org1,
                metadata={"round_idx": str(i % 3)},
                inputs=_data(world.dm, world.samples[i % 3]),
                outputs={"model": _output()},
            )
            for i in range(130)
        ],
    )
    world.c1.add_compute_plan(plan, auto_batching=True, batch_size=500)
    # 130 tasks at 100 per page: the SDK follows `next` and re-sends its params.
    listed = world.c1.list_task(filters={"compute_plan_key": [plan.key]})
    assert len(listed) == 130 and len({t.key for t in listed}) == 130
    rounds = world.c1.list_task(
        filters={"compute_plan_key": [plan.key], "metadata": [{"key": "round_idx", "type": "is", "value": "1"}]}
    )
    assert len(rounds) == 43 and all(t.metadata["round_idx"] == "1" for t in rounds)
    # substrafl's query (FL:model_loading.py): plan, worker, rank and round, by end date.
    substrafl = world.c1.list_task(
        filters={
            "compute_plan_key": [world.plan.key],
            "worker": [world.org1],
            "rank": [0],
            "metadata": [{"key": "round_idx", "type": "is", "value": "0"}],
        },
        order_by="end_date",
    )
    assert [t.key for t in substrafl] == [world.tasks[0]]
    # Compute plans come 10 per page.
    keys = [world.c1.add_compute_plan(schemas.ComputePlanSpec(name=f"paged-{i}")).key for i in range(11)]
    paged = world.c1.list_compute_plan(filters={"name": "paged-"}, order_by="creation_date", ascending=True)
    assert [p.key for p in paged] == keys


def test_update_names(world):
    world.c1.update_dataset(world.dm, "renamed-ds")
    world.c1.update_function(world.functions["predict"], "renamed-predict")
    world.c1.update_compute_plan(world.plan.key, "renamed-cp")
    assert world.c1.get_dataset(world.dm).name == "renamed-ds"
    assert world.c1.get_function(world.functions["predict"]).name == "renamed-predict"
    assert world.c1.get_compute_plan(world.plan.key).name == "renamed-cp"


def test_cancel_compute_plan_and_add_task(world):
    task_key = world.c1.add_task(
        schemas.TaskSpec(
            function_key=world.functions["train"],
            worker=world.org1,
            inputs=_data(world.dm, world.samples[0]),
            outputs={"model": _output()},
        )
    )
    task = world.c1.get_task(task_key)
    plan = world.c1.get_compute_plan(task.compute_plan_key)
    assert plan.name == task_key and plan.task_count == 1
    world.c1.cancel_compute_plan(plan.key)
    assert world.c1.get_compute_plan(plan.key).status == models.ComputePlanStatus.canceled
    assert world.c1.get_task(task_key).status == models.ComputeTaskStatus.canceled


def test_failed_task_logs(world, net, tmp_path):
    task_key = world.c1.add_task(
        schemas.TaskSpec(
            function_key=world.functions["train"],
            worker=world.org1,
            inputs=_data(world.dm, world.samples[2]),
            outputs={"model": _output()},
        )
    )
    with pytest.raises(exceptions.HTTPError) as info:
        world.c1.get_logs(task_key)
    assert info.value.status_code == 410
    fail(net.org1, task_key, b"Traceback: boom\n")
    task = world.c1.wait_task(task_key, timeout=10, raise_on_failure=False)
    assert task.status == models.ComputeTaskStatus.failed and task.error_type == models.TaskErrorType.execution
    assert world.c1.get_logs(task_key) == "Traceback: boom\n"
    headers = {"Authorization": world.c1._backend._client._headers["Authorization"]}
    response = requests.get(f"{net.org1.url}/task/{task_key}/logs/", headers=headers, timeout=10)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-disposition"] == f'attachment; filename="tuple_logs_{task_key}.txt"'
    (tmp_path / "logs").mkdir()
    downloaded = world.c1.download_logs(task_key, tmp_path / "logs")
    assert Path(downloaded).read_text() == "Traceback: boom\n"


def test_a_failed_build_gives_its_tasks_its_logs(world, net):
    spec = function_spec(world.folder, world.paths, "train")
    function_key = world.c1.add_function(spec.model_copy(update={"name": "broken"}))
    task_key = world.c1.add_task(
        schemas.TaskSpec(
            function_key=function_key,
            worker=world.org1,
            inputs=_data(world.dm, world.samples[2]),
            outputs={"model": _output()},
        )
    )
    fail_build(net.org1, function_key, b"build: no such package\n")
    task = world.c1.wait_task(task_key, timeout=10, raise_on_failure=False)
    assert task.status == models.ComputeTaskStatus.failed and task.error_type == models.TaskErrorType.build
    # The task's logs are its function's, by the SDK's route and by the address the task shows.
    assert world.c1.get_logs(task_key) == "build: no such package\n"
    headers = {"Authorization": world.c1._backend._client._headers["Authorization"]}
    shown = requests.get(f"{net.org1.url}/task/{task_key}/", headers=headers, timeout=10).json()["logs_address"]
    assert shown["storage_address"] == f"{net.org1.url}/logs/{function_key}/file/"
    assert requests.get(shown["storage_address"], headers=headers, timeout=10).text == "build: no such package\n"


def test_errors_map_to_sdk_exceptions(world, net):
    with pytest.raises(exceptions.NotFound):
        world.c1.get_dataset(str(uuid.uuid4()))
    with pytest.raises(exceptions.InvalidRequest):
        world.c1.get_task("not-a-uuid")
    # Only the owner renames: the ledger's PERMISSION_DENIED is a 403.
    with pytest.raises(exceptions.AuthorizationError):
        world.c2.update_function(world.functions["train"], "stolen")
    with pytest.raises(exceptions.AuthorizationError):
        world.c2.cancel_compute_plan(world.plan.key)
    # A plan key taken with another name is a 409 with the key.
    with pytest.raises(exceptions.AlreadyExists) as info:
        world.c1._backend._client.request("post", "compute_plan", json={"key": world.plan.key, "name": "other"})
    assert info.value.key == world.plan.key
    # Re-posting the same plan (an SDK retry) answers the existing plan instead.
    again = world.c1._backend._client.request(
        "post", "compute_plan", json={"key": world.plan.key, "name": "renamed-cp", "tag": "demo"}
    )
    assert again["key"] == world.plan.key
    # Re-submitted tasks are a 409 the SDK skips.
    resubmitted = schemas.ComputePlanTaskSpec(
        task_id=world.tasks[0],
        function_key=world.functions["train"],
        worker=world.org1,
        inputs=_data(world.dm, world.samples[0]),
        outputs={"model": _output()},
    )
    plan = world.c1.add_compute_plan_tasks(world.plan.key, {"tasks": [resubmitted]})
    assert plan.task_count == 3


def test_private_files_are_refused_to_other_organizations(world, tmp_path):
    private = schemas.Permissions(public=False, authorized_ids=[world.org1])
    key = world.c1.add_function(function_spec(world.folder, world.paths, "train", permissions=private))
    assert world.c1.download_function(key, tmp_path).exists()
    assert world.c2.get_function(key).permissions.process.authorized_ids == [world.org1]
    with pytest.raises(exceptions.AuthorizationError):
        world.c2.download_function(key, tmp_path)
    with pytest.raises(exceptions.AuthorizationError):
        world.c2.describe_function(key)


def test_authentication(world, net):
    user = client(net.org1, net.org1.user)
    assert user.organization_info().organization_id == "MyOrg1MSP"
    user.logout()
    with pytest.raises(exceptions.AuthenticationError):
        substra.Client(url=net.org1.url, backend_type="remote", token="not-a-token").list_dataset()
    # A named API token (made in the web UI in Substra) drives the SDK without a login.
    auth = {"Authorization": world.c1._backend._client._headers["Authorization"]}
    named = requests.post(f"{net.org1.url}/api-token/", json={"note": "sdk"}, headers=auth, timeout=10).json()
    with_token = substra.Client(url=net.org1.url, backend_type="remote", token=named["token"])
    assert world.dm in {d.key for d in with_token.list_dataset()}
    with pytest.raises(exceptions.BadLoginException):
        substra.Client(url=net.org1.url, backend_type="remote", username=net.org1.admin.username, password="wrong")
    lost = substra.Client(url=net.org1.url, backend_type="remote", username="org1-lost", password="lost-password")
    with pytest.raises(exceptions.AuthorizationError):
        lost.list_dataset()
    # A token stops working once logged out.
    session = client(net.org1)
    token = session._backend._client._headers["Authorization"]
    session.logout()
    response = requests.get(f"{net.org1.url}/data_manager/", headers={"Authorization": token}, timeout=10)
    assert response.status_code == 401
