"""The real ``substra==1.0.0`` SDK drives the sequence of contract §10 on two organizations, with
real execution: every task below runs as a substratools subprocess on its worker's compute.

MyOrg1MSP registers the functions and the plans; each organization registers its own dataset and
samples. The federated plan trains on each organization's data, averages the two models on
MyOrg1MSP, then predicts and scores on each organization's held-out sample; the performances are
checked against the same computation done here with numpy.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
import substra
from substra.sdk import exceptions, models, schemas

from tests.sdk.conftest import sdk_client
from tools.samples import flassets

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

POLL = 0.3
PUBLIC = schemas.Permissions(public=True, authorized_ids=[])
MODEL = schemas.AssetKind.model
DATA_IN = [
    schemas.FunctionInputSpec(identifier="opener", kind=schemas.AssetKind.data_manager, multiple=False, optional=False),
    schemas.FunctionInputSpec(
        identifier="datasamples", kind=schemas.AssetKind.data_sample, multiple=True, optional=False
    ),
]
MODELS_IN = [schemas.FunctionInputSpec(identifier="models", kind=MODEL, multiple=True, optional=True)]
MODEL_OUT = [schemas.FunctionOutputSpec(identifier="model", kind=MODEL, multiple=False)]
SIGNATURES = {
    "train": (DATA_IN + MODELS_IN, MODEL_OUT),
    "aggregate": (
        [schemas.FunctionInputSpec(identifier="models", kind=MODEL, multiple=True, optional=False)],
        MODEL_OUT,
    ),
    "predict": (
        [*DATA_IN, schemas.FunctionInputSpec(identifier="models", kind=MODEL, multiple=False, optional=False)],
        [schemas.FunctionOutputSpec(identifier="predictions", kind=MODEL, multiple=False)],
    ),
    "score": (
        [schemas.FunctionInputSpec(identifier="predictions", kind=MODEL, multiple=False, optional=False)],
        [schemas.FunctionOutputSpec(identifier="performance", kind=schemas.AssetKind.performance, multiple=False)],
    ),
    "sleep": (DATA_IN + MODELS_IN, MODEL_OUT),
    "explode": (DATA_IN + MODELS_IN, MODEL_OUT),
}


def _allowed(*orgs: str) -> schemas.Permissions:
    return schemas.Permissions(public=False, authorized_ids=list(dict.fromkeys(orgs)))


def _output(permissions: schemas.Permissions = PUBLIC) -> schemas.ComputeTaskOutputSpec:
    return schemas.ComputeTaskOutputSpec(permissions=permissions, transient=False)


def _data(dm: str, *samples: str) -> list[schemas.InputRef]:
    return [schemas.InputRef(identifier="opener", asset_key=dm)] + [
        schemas.InputRef(identifier="datasamples", asset_key=s) for s in samples
    ]


def _parents(identifier: str, *refs: tuple[str, str]) -> list[schemas.InputRef]:
    return [
        schemas.InputRef(identifier=identifier, parent_task_key=task, parent_task_output_identifier=output)
        for task, output in refs
    ]


def _write_sample(folder: Path, rows: np.ndarray) -> np.ndarray:
    """A data sample folder with its data.csv; returns the rows as the opener will read them."""
    flassets.write(folder / "data.csv", "\n".join(",".join(f"{x:.6f}" for x in row) for row in rows) + "\n")
    return np.loadtxt(folder / "data.csv", delimiter=",", ndmin=2)


def _sha256(data: bytes, salt: str = "") -> str:
    return hashlib.sha256(data + salt.encode()).hexdigest()


@pytest.fixture(scope="module")
def world(organizations, tmp_path_factory):
    """Contract §10 steps 1-8: login, organizations, a dataset and three samples per organization,
    and the functions (registered by MyOrg1MSP and built by its compute)."""
    folder = tmp_path_factory.mktemp("sdk-sequence")
    c1, c2 = sdk_client(organizations[0]), sdk_client(organizations[1])
    org1, org2 = c1.organization_info().organization_id, c2.organization_info().organization_id
    rng = np.random.default_rng(11)
    datasets, samples, rows = {}, {}, {}
    for index, (client, org) in enumerate(((c1, org1), (c2, org2))):
        base = folder / org
        opener = flassets.write(base / "opener.py", flassets.OPENER)
        description = flassets.write(base / "description.md", f"# {org}'s rows\n")
        # MyOrg1MSP builds the plans, so it may process both datasets; the logs stay with the owner.
        dm = client.add_dataset(
            schemas.DatasetSpec(
                name=f"sdk-e2e-{org}",
                data_opener=opener,
                description=description,
                permissions=_allowed(org1, org),
                logs_permission=_allowed(org),
                metadata={"org": org},
            )
        )
        data = {name: _write_sample(base / f"{org}-{name}", rng.normal(index + 1, 1.0, (4, 3))) for name in "abc"}
        single = client.add_data_sample(schemas.DataSampleSpec(path=base / f"{org}-a", data_manager_keys=[dm]))
        batch = client.add_data_samples(
            schemas.DataSampleSpec(paths=[base / f"{org}-b", base / f"{org}-c"], data_manager_keys=[dm])
        )
        datasets[org], samples[org], rows[org] = dm, dict(zip("abc", [single, *batch], strict=True)), data
    functions, archives = {}, {}
    for name, (inputs, outputs) in SIGNATURES.items():
        archives[name] = flassets.write(folder / "functions" / f"{name}.tar.gz", flassets.function_archive(name))
        description = flassets.write(folder / "functions" / f"{name}.md", f"# {name}\n")
        functions[name] = c1.add_function(
            schemas.FunctionSpec(
                name=name,
                description=description,
                file=archives[name],
                permissions=_allowed(org1) if name == "explode" else PUBLIC,
                inputs=inputs,
                outputs=outputs,
                metadata={"suite": "sdk-e2e"},
            )
        )
    world = SimpleNamespace(
        c1=c1, c2=c2, org1=org1, org2=org2, datasets=datasets, samples=samples, rows=rows,
        functions=functions, archives=archives, folder=folder, plan=None, tasks={},
    )  # fmt: skip
    yield world
    for client in (c1, c2):
        if client._token is not None:
            client.logout()


def test_login_info_and_organizations(world, organizations):
    info = world.c1.organization_info()
    assert (info.organization_id, info.channel) == ("MyOrg1MSP", "mychannel")
    assert str(info.host).rstrip("/") == organizations[0].gateway and info.config.model_export_enabled
    assert {o.id: o.is_current for o in world.c1.list_organization()} == {"MyOrg1MSP": True, "MyOrg2MSP": False}
    assert {o.id: o.is_current for o in world.c2.list_organization()} == {"MyOrg1MSP": False, "MyOrg2MSP": True}


def test_datasets_and_samples_are_registered(world):
    for client, org in ((world.c1, world.org1), (world.c2, world.org2)):
        dataset = client.get_dataset(world.datasets[org])
        assert dataset.owner == org and dataset.metadata == {"org": org}
        assert set(dataset.data_sample_keys) == set(world.samples[org].values())
        assert len(set(world.samples[org].values())) == 3
    # The peer sees MyOrg2MSP's dataset, and reads its description through its own gateway.
    assert world.c1.describe_dataset(world.datasets[world.org2]) == f"# {world.org2}'s rows\n"


def test_functions_are_built_and_downloadable(world, tmp_path):
    for name, key in world.functions.items():
        function = world.c1.wait_function(key, timeout=60, polling_period=POLL)
        assert function.status == models.FunctionStatus.ready, name
        assert function.metadata == {"suite": "sdk-e2e"}
    train = world.functions["train"]
    assert world.c1.download_function(train, tmp_path).read_bytes() == world.archives["train"].read_bytes()
    (tmp_path / "peer").mkdir()
    assert world.c2.download_function(train, tmp_path / "peer").read_bytes() == world.archives["train"].read_bytes()
    assert world.c2.describe_function(train) == "# train\n"


@pytest.fixture(scope="module")
def federated(world):
    """§10 steps 9-12: a plan over both organizations, run for real, waited for through the SDK."""
    f, dm, s = world.functions, world.datasets, world.samples
    o1, o2 = world.org1, world.org2
    keys = {n: str(uuid.uuid4()) for n in ("train1", "train2", "aggregate", "predict1", "predict2", "score1", "score2")}
    shared = _output(_allowed(o1, o2))

    def task(name, function, worker, inputs, outputs, round_idx, tag=None):
        return schemas.ComputePlanTaskSpec(
            task_id=keys[name],
            function_key=f[function],
            worker=worker,
            inputs=inputs,
            outputs=outputs,
            metadata={"round_idx": str(round_idx)},
            tag=tag,
        )

    aggregated = _parents("models", (keys["train1"], "model"), (keys["train2"], "model"))
    tasks = [
        task("train1", "train", o1, _data(dm[o1], s[o1]["a"], s[o1]["b"]), {"model": shared}, 0, "train"),
        task("train2", "train", o2, _data(dm[o2], s[o2]["a"], s[o2]["b"]), {"model": shared}, 0, "train"),
        task("aggregate", "aggregate", o1, aggregated, {"model": shared}, 1, "aggregate"),
    ]
    for i, org in ((1, o1), (2, o2)):
        # Predictions stay with their organization; the score is public.
        inputs = [*_data(dm[org], s[org]["c"]), *_parents("models", (keys["aggregate"], "model"))]
        tasks.append(task(f"predict{i}", "predict", org, inputs, {"predictions": _output(_allowed(org))}, 1))
        inputs = _parents("predictions", (keys[f"predict{i}"], "predictions"))
        tasks.append(task(f"score{i}", "score", org, inputs, {"performance": _output()}, 1))
    spec = schemas.ComputePlanSpec(
        key=str(uuid.uuid4()), name="sdk-e2e-federated", tag="e2e", metadata={"suite": "sdk"}, tasks=tasks
    )
    created = world.c1.add_compute_plan(spec, auto_batching=True, batch_size=3)
    assert created.key == spec.key and created.status == models.ComputePlanStatus.created
    plan = world.c1.wait_compute_plan(spec.key, timeout=150, polling_period=POLL)
    world.plan, world.tasks = plan, keys
    return plan


def _expected(world) -> dict:
    """The numpy version of what the functions compute (tools/samples/flassets.py)."""
    o1, o2 = world.org1, world.org2
    train = {org: np.concatenate([world.rows[org]["a"], world.rows[org]["b"]]).mean(axis=0) for org in (o1, o2)}
    aggregate = np.mean([train[o1], train[o2]], axis=0)
    scores = {}
    for i, org in ((1, o1), (2, o2)):
        predictions = np.abs(world.rows[org]["c"] - aggregate).mean(axis=0)
        scores[f"score{i}"] = 1.0 / (1.0 + float(np.square(predictions).mean()))
    return {"train1": train[o1], "train2": train[o2], "aggregate": aggregate, **scores}


def test_the_federated_plan_runs_to_done_with_the_expected_performances(world, federated):
    plan = federated
    assert plan.status == models.ComputePlanStatus.done
    assert plan.task_count == plan.done_count == 7 and plan.failed_count == 0
    assert plan.creator == "org1-admin" and plan.tag == "e2e" and plan.end_date is not None
    expected = _expected(world)
    performances = world.c1.get_performances(plan.key)
    by_task = dict(zip(performances.task_key, performances.performance, strict=True))
    assert by_task == {
        world.tasks["score1"]: pytest.approx(expected["score1"]),
        world.tasks["score2"]: pytest.approx(expected["score2"]),
    }
    assert sorted(zip(performances.worker, performances.round_idx, performances.identifier, strict=True)) == [
        (world.org1, 1, "performance"),
        (world.org2, 1, "performance"),
    ]
    outputs = world.c2.list_task_output_assets(world.tasks["score2"])
    assert [(o.identifier, o.kind) for o in outputs] == [("performance", "ASSET_PERFORMANCE")]
    assert outputs[0].asset == pytest.approx(expected["score2"])
    train1 = world.c1.get_task(world.tasks["train1"])
    assert train1.status == models.ComputeTaskStatus.done and train1.rank == 0 and train1.tag == "train"
    assert train1.start_date is not None and train1.end_date is not None and train1.error_type is None
    assert world.c1.get_task(world.tasks["score2"]).worker == world.org2


def test_models_are_downloaded_with_the_ledger_checksum(world, federated, tmp_path):
    expected = _expected(world)
    # Each model is fetched through MyOrg1MSP's gateway, MyOrg2MSP's from MyOrg2MSP's storage.
    for name in ("train1", "train2", "aggregate"):
        task_key = world.tasks[name]
        asset = world.c1.get_task_output_asset(task_key, "model")
        assert asset.kind == "ASSET_MODEL" and asset.asset.compute_task_key == task_key
        model = world.c1.get_model(asset.asset.key)
        assert model.owner == world.c1.get_task(task_key).worker
        path = world.c1.download_model_from_task(task_key, "model", tmp_path)
        data = path.read_bytes()
        assert model.address.checksum == _sha256(data, task_key), name
        assert json.loads(data) == pytest.approx(list(expected[name]), rel=1e-9), name
        listed = world.c1.list_task_output_assets(task_key)
        assert [(o.identifier, o.asset.key) for o in listed] == [("model", model.key)]
    # MyOrg2MSP downloads its own model through its own gateway: the same bytes.
    (tmp_path / "org2").mkdir()
    own = world.c2.download_model_from_task(world.tasks["train2"], "model", tmp_path / "org2")
    again = world.c1.download_model_from_task(world.tasks["train2"], "model", tmp_path)
    assert own.read_bytes() == again.read_bytes()
    inputs = world.c1.list_task_input_assets(world.tasks["aggregate"])
    assert sorted(i.identifier for i in inputs) == ["models", "models"]


def test_list_task_with_filters_and_ordering(world, federated):
    plan, keys = federated.key, world.tasks
    on_org2 = world.c1.list_task(filters={"compute_plan_key": [plan], "worker": [world.org2]})
    assert {t.key for t in on_org2} == {keys["train2"], keys["predict2"], keys["score2"]}
    round0 = world.c1.list_task(
        filters={
            "compute_plan_key": [plan],
            "status": [models.ComputeTaskStatus.done.value],
            "metadata": [{"key": "round_idx", "type": "is", "value": "0"}],
        }
    )
    assert {t.key for t in round0} == {keys["train1"], keys["train2"]}
    ranked = world.c1.list_task(
        filters={"compute_plan_key": [plan], "rank": [2, 3]}, order_by="end_date", ascending=True
    )
    assert {t.key for t in ranked} == {keys["predict1"], keys["predict2"], keys["score1"], keys["score2"]}
    ends = [t.end_date for t in ranked]
    assert ends == sorted(ends)
    newest_first = world.c1.list_task(filters={"compute_plan_key": [plan]}, order_by="end_date", ascending=False)
    assert [t.end_date for t in newest_first] == sorted((t.end_date for t in newest_first), reverse=True)
    assert newest_first[-1].rank == 0 and newest_first[0].rank == 3
    # substrafl's query (FL:model_loading.py): plan, worker, rank and round, by end date.
    query = {
        "compute_plan_key": [plan],
        "worker": [world.org1],
        "rank": [0],
        "metadata": [{"key": "round_idx", "type": "is", "value": "0"}],
    }
    assert [t.key for t in world.c1.list_task(filters=query, order_by="end_date")] == [keys["train1"]]
    # The peer lists the same tasks through its gateway.
    assert len(world.c2.list_task(filters={"compute_plan_key": [plan]})) == 7
    functions = world.c1.list_function(filters={"compute_plan_key": [plan]})
    assert {f.key for f in functions} >= {world.functions[n] for n in ("train", "aggregate", "predict", "score")}


def test_lists_follow_next_over_several_pages(world, organizations):
    """Compute plans come 10 per page (contract §1.1): 12 plans take two pages the SDK chains."""
    keys = [
        world.c1.add_compute_plan(schemas.ComputePlanSpec(key=str(uuid.uuid4()), name=f"sdk-e2e-page-{i}")).key
        for i in range(12)
    ]
    listed = world.c1.list_compute_plan(filters={"name": "sdk-e2e-page-"}, order_by="creation_date", ascending=True)
    assert [p.key for p in listed] == keys
    headers = {"Authorization": f"Token {world.c1._token}", "Accept": "application/json;version=0.0"}
    first = requests.get(
        f"{organizations[0].gateway}/compute_plan/", params={"match": "sdk-e2e-page-"}, headers=headers, timeout=10
    ).json()
    assert first["count"] == 12 and len(first["results"]) == 10 and first["next"]
    # Data samples of both organizations: every page seen from MyOrg2MSP as well.
    seen = {s.key for s in world.c2.list_data_sample()}
    assert {k for org in (world.org1, world.org2) for k in world.samples[org].values()} <= seen


def test_update_compute_plan_name(world, federated):
    world.c1.update_compute_plan(federated.key, "sdk-e2e-renamed")
    assert world.c1.get_compute_plan(federated.key).name == "sdk-e2e-renamed"
    assert world.c2.get_compute_plan(federated.key).name == "sdk-e2e-renamed"
    assert [p.key for p in world.c1.list_compute_plan(filters={"name": "sdk-e2e-renamed"})] == [federated.key]


def test_cancel_a_running_plan(world):
    o1, dm, sample = world.org1, world.datasets[world.org1], world.samples[world.org1]["a"]
    task_key = str(uuid.uuid4())
    spec = schemas.ComputePlanSpec(
        key=str(uuid.uuid4()),
        name="sdk-e2e-sleeper",
        tasks=[
            schemas.ComputePlanTaskSpec(
                task_id=task_key,
                function_key=world.functions["sleep"],
                worker=o1,
                inputs=_data(dm, sample),
                outputs={"model": _output()},
            )
        ],
    )
    plan = world.c1.add_compute_plan(spec)
    deadline = time.monotonic() + 60
    while world.c1.get_task(task_key).status != models.ComputeTaskStatus.executing:
        assert time.monotonic() < deadline, "the sleeping task did not start"
        time.sleep(POLL)
    assert world.c1.get_compute_plan(plan.key).status == models.ComputePlanStatus.doing
    started = time.monotonic()
    world.c1.cancel_compute_plan(plan.key)
    with pytest.raises(exceptions.FutureFailureError):
        world.c1.wait_compute_plan(plan.key, timeout=30, polling_period=POLL)
    canceled = world.c1.wait_compute_plan(plan.key, timeout=30, polling_period=POLL, raise_on_failure=False)
    assert canceled.status == models.ComputePlanStatus.canceled and canceled.canceled_count == 1
    assert world.c1.get_task(task_key).status == models.ComputeTaskStatus.canceled
    assert time.monotonic() - started < 30
    # A canceled plan cannot be canceled again (the ledger refuses: a 400).
    with pytest.raises(exceptions.InvalidRequest):
        world.c1.cancel_compute_plan(plan.key)


@pytest.fixture(scope="module")
def failed_task(world) -> str:
    """A task whose function raises: add_task, then wait_task."""
    task_key = world.c1.add_task(
        schemas.TaskSpec(
            function_key=world.functions["explode"],
            worker=world.org1,
            inputs=_data(world.datasets[world.org1], world.samples[world.org1]["a"]),
            outputs={"model": _output()},
        )
    )
    with pytest.raises(exceptions.FutureFailureError):
        world.c1.wait_task(task_key, timeout=60, polling_period=POLL)
    return task_key


def test_a_failing_function_fails_with_its_traceback(world, failed_task, tmp_path):
    task = world.c1.get_task(failed_task)
    assert task.status == models.ComputeTaskStatus.failed
    assert task.error_type == models.TaskErrorType.execution
    plan = world.c1.wait_compute_plan(task.compute_plan_key, timeout=30, polling_period=POLL, raise_on_failure=False)
    assert plan.status == models.ComputePlanStatus.failed and plan.failed_task_key == failed_task
    logs = world.c1.get_logs(failed_task)
    assert "Traceback" in logs and "RuntimeError: this function fails on purpose" in logs
    path = world.c1.download_logs(failed_task, tmp_path)
    assert Path(path).name == f"task_logs_{failed_task}.txt" and Path(path).read_text() == logs
    # A task that succeeded has no logs (Substra keeps the logs of failures only).
    with pytest.raises(exceptions.HTTPError) as info:
        world.c1.get_logs(world.c1.list_task(filters={"status": ["STATUS_DONE"]})[0].key)
    assert info.value.status_code == 410


def test_refusals_surface_as_sdk_exceptions(world, federated, failed_task, tmp_path):
    # The plan belongs to MyOrg1MSP: its peer may neither rename nor cancel it.
    with pytest.raises(exceptions.AuthorizationError):
        world.c2.update_compute_plan(federated.key, "stolen")
    with pytest.raises(exceptions.AuthorizationError):
        world.c2.update_function(world.functions["train"], "stolen")
    # The logs of MyOrg1MSP's data are its own (the dataset's logs_permission).
    with pytest.raises(exceptions.AuthorizationError):
        world.c2.get_logs(failed_task)
    # A function shared with MyOrg1MSP only.
    with pytest.raises(exceptions.AuthorizationError):
        world.c2.download_function(world.functions["explode"], tmp_path)
    # MyOrg1MSP's predictions are not MyOrg2MSP's to download, nor MyOrg2MSP's to MyOrg1MSP.
    with pytest.raises(exceptions.AuthorizationError):
        world.c2.download_model_from_task(world.tasks["predict1"], "predictions", tmp_path)
    with pytest.raises(exceptions.NotFound):
        world.c1.get_task(str(uuid.uuid4()))
    with pytest.raises(exceptions.NotFound):
        world.c2.get_compute_plan(str(uuid.uuid4()))
    with pytest.raises(exceptions.NotFound):
        world.c1.download_model(str(uuid.uuid4()), tmp_path)
    assert world.c1.get_compute_plan(federated.key).name != "stolen"


def test_logout(world, organizations):
    world.c2.logout()
    with pytest.raises(exceptions.AuthenticationError):
        world.c2.list_compute_plan()
    session = sdk_client(organizations[0])
    token = session._token
    session.logout()
    assert session._token is None
    with pytest.raises(exceptions.AuthenticationError):
        substra.Client(url=organizations[0].gateway, backend_type="remote", token=token).list_dataset()
