"""Plans run for real: two organizations, the local executor, substratools functions on numpy data."""

from __future__ import annotations

import uuid

import grpc
import numpy as np
import pytest
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import compute_service_pb2 as compute_api
from tessera.compute.v1 import compute_service_pb2_grpc as compute_grpc
from tessera.storage.v1 import storage_pb2

from services.kit.client import sync_channel
from tests.execution.conftest import digest, download, grpc_code, wait_for, wait_function_ready, wait_plan_final

ROUNDS = 2
MODEL_IN = {"models": res.FunctionInput(kind=res.ASSET_MODEL, optional=True, multiple=True)}
DATA_IN = {
    "opener": res.FunctionInput(kind=res.ASSET_DATA_MANAGER),
    "datasamples": res.FunctionInput(kind=res.ASSET_DATA_SAMPLE, multiple=True),
}
MODEL_OUT = {"model": res.FunctionOutput(kind=res.ASSET_MODEL)}


def _private(*orgs):
    return res.NewPermissions(public=False, authorized_ids=list(orgs))


def _inputs(dm, samples, **parents):
    items = [api.NewComputeTaskInput(identifier="opener", asset_key=dm)]
    items += [api.NewComputeTaskInput(identifier="datasamples", asset_key=s) for s in samples]
    for identifier, refs in parents.items():
        items += [
            api.NewComputeTaskInput(identifier=identifier, parent_task_key=k, parent_task_output_identifier=o)
            for k, o in refs
        ]
    return items


def _task(plan, function, inputs, outputs, worker="", round_idx=None):
    task = api.NewComputeTask(
        key=str(uuid.uuid4()), compute_plan_key=plan, function_key=function, worker=worker, inputs=inputs
    )
    for name, permissions in outputs.items():
        task.outputs[name].CopyFrom(api.NewComputeTaskOutput(permissions=permissions))
    if round_idx is not None:
        task.metadata["round_idx"] = str(round_idx)
    return task


@pytest.fixture(scope="module")
def functions(orgs):
    org1 = orgs[0]
    keys = {
        "train": org1.function("train", {**DATA_IN, **MODEL_IN}, MODEL_OUT),
        "aggregate": org1.function(
            "aggregate", {"models": res.FunctionInput(kind=res.ASSET_MODEL, multiple=True)}, MODEL_OUT
        ),
        "predict": org1.function(
            "predict",
            {**DATA_IN, "models": res.FunctionInput(kind=res.ASSET_MODEL)},
            {"predictions": res.FunctionOutput(kind=res.ASSET_MODEL)},
        ),
        "score": org1.function(
            "score",
            {"predictions": res.FunctionInput(kind=res.ASSET_MODEL)},
            {"performance": res.FunctionOutput(kind=res.ASSET_PERFORMANCE)},
        ),
    }
    for key in keys.values():
        assert wait_function_ready(org1, key).status == res.FUNCTION_STATUS_READY
    return keys


def test_a_federated_plan_completes_with_correct_performances(orgs, functions, network):
    org1, org2 = orgs
    rng = np.random.default_rng(7)
    data = {org.id: [rng.normal(i + 1, 1.0, (6, 3)) for _ in range(2)] for i, org in enumerate(orgs)}
    datasets = {org.id: org.dataset(data[org.id], _private(org1.id)) for org in orgs}
    plan = str(uuid.uuid4())
    org1.ledger.RegisterComputePlan(api.RegisterComputePlanRequest(key=plan, name="fl"))

    tasks, scores, previous = [], [], None
    model_perm = _private(org1.id, org2.id)
    for r in range(ROUNDS):
        trains = []
        for org in orgs:
            dm, samples = datasets[org.id]
            parents = {"models": [(previous, "model")]} if previous else {}
            trains.append(
                _task(plan, functions["train"], _inputs(dm, samples, **parents), {"model": model_perm}, round_idx=r)
            )
        agg = _task(
            plan,
            functions["aggregate"],
            [
                api.NewComputeTaskInput(
                    identifier="models", parent_task_key=t.key, parent_task_output_identifier="model"
                )
                for t in trains
            ],
            {"model": model_perm},
            worker=org1.id,
            round_idx=r,
        )
        tasks += [*trains, agg]
        for org in orgs:
            dm, samples = datasets[org.id]
            predict = _task(
                plan,
                functions["predict"],
                _inputs(dm, samples, models=[(agg.key, "model")]),
                {"predictions": _private(org.id)},
                round_idx=r,
            )
            score = _task(
                plan,
                functions["score"],
                [
                    api.NewComputeTaskInput(
                        identifier="predictions",
                        parent_task_key=predict.key,
                        parent_task_output_identifier="predictions",
                    )
                ],
                {"performance": res.NewPermissions(public=True)},
                worker=org.id,
                round_idx=r,
            )
            tasks += [predict, score]
            scores.append((r, org.id, score.key))
        previous = agg.key
    org1.ledger.RegisterTasks(api.RegisterTasksRequest(tasks=tasks))

    final = wait_plan_final(org1, plan)
    assert final.status == res.PLAN_STATUS_DONE, final
    assert final.done_count == len(tasks) == ROUNDS * 7

    # The same computation in numpy: the model is a mean vector, averaged across rounds.
    expected, model = {}, None
    for r in range(ROUNDS):
        trained = []
        for org in orgs:
            mean = np.concatenate(data[org.id]).mean(axis=0)
            trained.append(mean if model is None else (mean + model) / 2)
        model = np.mean(trained, axis=0)
        for org in orgs:
            prediction = np.abs(np.concatenate(data[org.id]) - model).mean(axis=0)
            expected[(r, org.id)] = 1.0 / (1.0 + float(np.square(prediction).mean()))
    perfs = org2.ledger.GetComputePlanPerformances(api.GetComputePlanPerformancesRequest(key=plan)).results
    got = {(p.compute_task.round_idx, p.compute_task.worker): p.perf for p in perfs}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key

    # Models crossed organizations where permitted: org1 aggregated org2's model...
    last_agg = tasks[2 + 7 * (ROUNDS - 1)]
    inputs = org1.ledger.GetTaskInputAssets(api.GetTaskInputAssetsRequest(key=last_agg.key)).assets
    assert {a.model.owner for a in inputs} == {org1.id, org2.id}
    # ...which org2's storage served to it, under the model's checksum salted with its task key.
    trained_by_org2 = next(a.model for a in inputs if a.model.owner == org2.id)
    fetched = download(org1.storage_of(org2), storage_pb2.FILE_KIND_MODEL, trained_by_org2.key)
    assert digest(fetched, trained_by_org2.compute_task_key) == trained_by_org2.address.checksum
    # org2's second training read org1's first aggregate: its run message named that model, and org2's
    # compute fetched it while the ledger was starting a task that reads it.
    second_train = tasks[7 + 1]
    (aggregated,) = org2.ledger.GetTaskInputAssets(
        api.GetTaskInputAssetsRequest(key=second_train.key, identifier="models")
    ).assets
    compute_log = network.log_path(network.service("compute", org2.id)).read_text()
    assert f"model {aggregated.model.key} fetched ahead of the start of task" in compute_log
    # Profiling steps were recorded for each task.
    steps = org1.ledger.ListProfilingSteps(api.ListProfilingStepsRequest(asset_key=last_agg.key)).profiling_steps
    assert [s.step for s in steps] == ["prepare_inputs", "task_execution", "save_outputs"]  # its own function
    # Once the plan ended, each compute removed the models it had cached for the plan's tasks (the aggregation's
    # inputs among them: fetched from org2, or kept by org1 when it made them); storage still serves them.
    caches = [network.state_dir / "compute" / org.id / "cache" / "models" for org in orgs]

    def forgotten() -> bool:
        return not any(list(cache.rglob(a.model.key)) for cache in caches for a in inputs)

    wait_for(forgotten, timeout=30, what="the ended plan's cached models removed")
    assert all(cache.is_dir() for cache in caches)
    assert download(org1.storage_of(org2), storage_pb2.FILE_KIND_MODEL, trained_by_org2.key) == fetched


def test_a_peer_s_model_is_fetched_when_registered_while_its_reader_waits_for_another_parent(orgs, functions, network):
    """org1's aggregation reads two trainings of org2, the second reading the first: the first's model is
    registered while the aggregation still waits, and org1 fetches it then (FetchAhead), not after its start."""
    org1, org2 = orgs
    dm, samples = org2.dataset([np.random.default_rng(11).normal(0, 1, (4, 3))], _private(org1.id))
    plan = str(uuid.uuid4())
    org1.ledger.RegisterComputePlan(api.RegisterComputePlanRequest(key=plan, name="fetch ahead"))
    shared = {"model": _private(org1.id, org2.id)}
    first = _task(plan, functions["train"], _inputs(dm, samples), shared)
    second = _task(plan, functions["train"], _inputs(dm, samples, models=[(first.key, "model")]), shared)
    models = [
        api.NewComputeTaskInput(identifier="models", parent_task_key=t.key, parent_task_output_identifier="model")
        for t in (first, second)
    ]
    aggregate = _task(plan, functions["aggregate"], models, shared, worker=org1.id)
    org1.ledger.RegisterTasks(api.RegisterTasksRequest(tasks=[first, second, aggregate]))
    assert wait_plan_final(org1, plan).status == res.PLAN_STATUS_DONE
    (model,) = (a.model for a in _outputs(org1, first.key))
    event_log = network.log_path(network.service("event", org1.id)).read_text()
    assert f"fetch {model.key}" in event_log  # "early fetches → fetch <key>"
    compute_log = network.log_path(network.service("compute", org1.id)).read_text()
    assert f"model {model.key} fetched ahead of the start of task {aggregate.key}" in compute_log


def _outputs(org, task_key: str):
    return org.ledger.ListTaskOutputAssets(api.ListTaskOutputAssetsRequest(key=task_key)).assets


def test_models_cross_organizations_only_where_permitted(orgs, functions, network):
    org1, org2 = orgs
    rng = np.random.default_rng(3)
    dm, samples = org2.dataset([rng.normal(0, 1, (4, 3))], _private(org2.id))
    plan = str(uuid.uuid4())
    org2.ledger.RegisterComputePlan(api.RegisterComputePlanRequest(key=plan, name="private"))
    task = _task(plan, functions["train"], _inputs(dm, samples), {"model": _private(org2.id)})
    org2.ledger.RegisterTasks(api.RegisterTasksRequest(tasks=[task]))
    assert wait_plan_final(org2, plan).status == res.PLAN_STATUS_DONE
    (output,) = org2.ledger.ListTaskOutputAssets(api.ListTaskOutputAssetsRequest(key=task.key)).assets
    assert output.model.owner == org2.id and list(output.model.permissions.process.authorized_ids) == [org2.id]
    # org1 may not fetch org2's private model, nor org2's data, from org2's storage...
    assert grpc_code(download, org1.storage_of(org2), storage_pb2.FILE_KIND_MODEL, output.model.key) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert grpc_code(download, org1.storage_of(org2), storage_pb2.FILE_KIND_DATA_SAMPLE, samples[0]) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # ...nor have org2's compute fetch it (only org2's own services may ask that)...
    compute = compute_grpc.ComputeServiceStub(sync_channel(network.service("compute", org2.id).addr, org1.creds))
    request = compute_api.FetchAheadRequest(compute_plan_key=plan, compute_task_key=task.key, model=output.model)
    assert grpc_code(compute.FetchAhead, request) == grpc.StatusCode.PERMISSION_DENIED
    # ...nor use the model in a task it runs: the ledger refuses to register it.
    plan1 = str(uuid.uuid4())
    org1.ledger.RegisterComputePlan(api.RegisterComputePlanRequest(key=plan1, name="thief"))
    use = _task(
        plan1,
        functions["aggregate"],
        [api.NewComputeTaskInput(identifier="models", asset_key=output.model.key)],
        {"model": _private(org1.id)},
        worker=org1.id,
    )
    assert grpc_code(org1.ledger.RegisterTasks, api.RegisterTasksRequest(tasks=[use])) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
