"""What tasks produce and report: models, performances, transient outputs and DisableOutput, input
resolution, the permission checks storage relies on, and profiling steps (domain §1.9-1.13, §1.15,
§2.5, §3.6)."""

from __future__ import annotations

import grpc
import pytest
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from tests.integration.ledger.conftest import (
    ORGS,
    TRAIN_IO,
    act,
    address,
    call_error,
    data_inputs,
    make_data_manager,
    make_function,
    make_plan,
    make_samples,
    model_input,
    new_key,
    parent_input,
    private,
    public,
    status,
    task_spec,
)

# A task chaining on an optional model, producing one model.
CHAIN_IO = {
    "inputs": {"model": model_input(optional=True)},
    "outputs": {"model": res.FunctionOutput(kind=res.ASSET_MODEL)},
}
# Several models under one output.
MULTI_IO = {
    "inputs": {"model": model_input(optional=True)},
    "outputs": {"models": res.FunctionOutput(kind=res.ASSET_MODEL, multiple=True)},
}
# A model and a performance.
SCORED_IO = {
    "inputs": {"model": model_input(optional=True)},
    "outputs": {
        "model": res.FunctionOutput(kind=res.ASSET_MODEL),
        "performance": res.FunctionOutput(kind=res.ASSET_PERFORMANCE),
    },
}


# ------------------------------------------------------------------------------------------ helpers
def register(stub, *specs) -> list[res.ComputeTask]:
    return list(stub.RegisterTasks(api.RegisterTasksRequest(tasks=list(specs))).tasks)


def spec(plan_key: str, function: res.Function, parent_key: str = "", worker: str = ORGS[1], output="model", **outs):
    inputs = [parent_input("model", parent_key, output)] if parent_key else []
    return task_spec(plan_key, function, inputs, worker=worker, **outs)


def new_model(task_key: str, identifier: str = "model", key: str = "") -> api.NewModel:
    return api.NewModel(
        key=key or new_key(),
        compute_task_key=task_key,
        compute_task_output_identifier=identifier,
        address=address("model"),
    )


def register_models(stub, *models: api.NewModel) -> list[res.Model]:
    return list(stub.RegisterModels(api.RegisterModelsRequest(models=list(models))).models)


def register_performance(stub, task_key: str, value: float, identifier: str = "performance") -> res.Performance:
    request = api.RegisterPerformanceRequest(
        compute_task_key=task_key, compute_task_output_identifier=identifier, performance_value=value
    )
    return stub.RegisterPerformance(request).performance


def disable(stub, task_key: str, identifier: str = "model") -> list[res.Model]:
    request = api.DisableOutputRequest(compute_task_key=task_key, identifier=identifier)
    return list(stub.DisableOutput(request).models)


def executing(ledger, io=CHAIN_IO, **outs) -> res.ComputeTask:
    """A task of a fresh plan owned by org1, run by org2, now EXECUTING."""
    function = make_function(ledger.org1, io=io)
    plan = make_plan(ledger.org1)
    task = register(ledger.org1, spec(plan.key, function, **outs))[0]
    act(ledger.org2, task.key, res.TASK_ACTION_EXECUTING)
    return task


def head(stub) -> int:
    """Position of the channel's latest event."""
    latest = stub.QueryEvents(api.QueryEventsRequest(descending=True, page_size=1)).events
    return latest[0].position if latest else 0


def events_after(stub, position: int) -> list[ev.Event]:
    return list(stub.QueryEvents(api.QueryEventsRequest(after_position=position, page_size=1000)).events)


def output_assets(stub, task_key: str, **filters) -> api.ListTaskOutputAssetsResponse:
    return stub.ListTaskOutputAssets(api.ListTaskOutputAssetsRequest(key=task_key, **filters))


def input_assets(stub, task_key: str, **filters) -> api.GetTaskInputAssetsResponse:
    return stub.GetTaskInputAssets(api.GetTaskInputAssetsRequest(key=task_key, **filters))


def can_process(stub, kind: int, key: str, org: str, download: bool = False) -> bool:
    request = api.CanProcessRequest(asset_kind=kind, asset_key=key, organization_id=org, download=download)
    return stub.CanProcess(request).allowed


def can_access_logs(stub, key: str, org: str) -> bool:
    return stub.CanAccessLogs(api.CanAccessLogsRequest(asset_key=key, organization_id=org)).allowed


def finish(stub, task_key: str) -> None:
    act(stub, task_key, res.TASK_ACTION_EXECUTING)
    act(stub, task_key, res.TASK_ACTION_DONE)


def reason_of(error) -> tuple[grpc.StatusCode, str]:
    return error.code, error.reason


# ------------------------------------------------------------------------------------------- models
def test_only_the_worker_of_an_executing_task_registers_models(ledger):
    function = make_function(ledger.org1, io=SCORED_IO)
    plan = make_plan(ledger.org1)
    task = register(ledger.org1, spec(plan.key, function))[0]
    error = call_error(register_models, ledger.org2, new_model(task.key))
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "TASK_NOT_EXECUTING")

    act(ledger.org2, task.key, res.TASK_ACTION_EXECUTING)
    for stranger in (ledger.org1, ledger.org3):  # the plan owner is not the worker
        assert call_error(register_models, stranger, new_model(task.key)).code == grpc.StatusCode.PERMISSION_DENIED
    for identifier in ("performance", "nope"):
        error = call_error(register_models, ledger.org2, new_model(task.key, identifier))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in error.violations] == ["models[0].compute_task_output_identifier"]

    model = register_models(ledger.org2, new_model(task.key))[0]
    assert model.compute_task_key == task.key and model.compute_task_output_identifier == "model"
    act(ledger.org2, task.key, res.TASK_ACTION_DONE)
    error = call_error(register_models, ledger.org2, new_model(task.key))
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "TASK_NOT_EXECUTING")
    error = call_error(register_models, ledger.org2, new_model(new_key()))
    assert error.code == grpc.StatusCode.NOT_FOUND


def test_a_single_output_takes_one_model(ledger):
    task = executing(ledger)
    register_models(ledger.org2, new_model(task.key))
    assert call_error(register_models, ledger.org2, new_model(task.key)).code == grpc.StatusCode.ALREADY_EXISTS
    other = executing(ledger)
    error = call_error(register_models, ledger.org2, new_model(other.key), new_model(other.key))
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    # Nothing of the refused call was kept.
    assert output_assets(ledger.org1, other.key).total_size == 0


def test_model_keys_are_unique(ledger):
    first, second = executing(ledger, io=MULTI_IO), executing(ledger, io=MULTI_IO)
    taken = register_models(ledger.org2, new_model(first.key, "models"))[0]
    error = call_error(register_models, ledger.org2, new_model(second.key, "models", key=taken.key))
    assert error.code == grpc.StatusCode.ALREADY_EXISTS and error.metadata["keys"] == taken.key
    # The same key twice in one call is a malformed request.
    key = new_key()
    error = call_error(
        register_models, ledger.org2, new_model(second.key, "models", key), new_model(second.key, "models", key)
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert output_assets(ledger.org1, second.key).total_size == 0


def test_models_of_one_call_belong_to_one_task_and_are_well_formed(ledger):
    first, second = executing(ledger), executing(ledger)
    error = call_error(register_models, ledger.org2, new_model(first.key), new_model(second.key))
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert call_error(register_models, ledger.org2).code == grpc.StatusCode.INVALID_ARGUMENT
    bad = new_model(first.key)
    bad.address.checksum = "not-a-checksum"
    error = call_error(register_models, ledger.org2, bad)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.violations] == ["models[0].address.checksum"]
    bad = new_model(first.key, key="not-a-uuid")
    assert call_error(register_models, ledger.org2, bad).code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_model_takes_the_output_permissions_and_the_worker_as_owner(ledger):
    task = executing(ledger, model=api.NewComputeTaskOutput(permissions=private(ORGS[2])))
    request = new_model(task.key)
    model = register_models(ledger.org2, request)[0]
    assert model.owner == ORGS[1]  # the worker, not the plan owner
    # Output permissions are made by the task owner, who is always authorized.
    expected = res.Permission(public=False, authorized_ids=[ORGS[0], ORGS[2]])
    assert model.permissions.process == expected and model.permissions.download == expected
    assert model.address == request.address and model.HasField("creation_date")
    assert ledger.org3.GetModel(api.GetModelRequest(key=model.key)).model == model
    listed = ledger.org1.ListModels(api.ListModelsRequest(compute_task_key=[task.key]))
    assert list(listed.models) == [model]


def test_each_model_emits_its_creation_then_its_output_link(ledger):
    task = executing(ledger, io=MULTI_IO)
    before = head(ledger.org1)
    first, second = register_models(ledger.org2, new_model(task.key, "models"), new_model(task.key, "models"))
    events = events_after(ledger.org1, before)
    assert [(e.asset_kind, e.event_kind) for e in events] == [
        (res.ASSET_MODEL, ev.EVENT_ASSET_CREATED),
        (res.ASSET_COMPUTE_TASK_OUTPUT_ASSET, ev.EVENT_ASSET_CREATED),
    ] * 2
    assert [events[0].model, events[2].model] == [first, second]
    assert events[0].asset_key == first.key
    link = events[1].compute_task_output_asset
    assert (link.compute_task_key, link.compute_task_output_identifier, link.asset_kind, link.asset_key) == (
        task.key,
        "models",
        res.ASSET_MODEL,
        first.key,
    )
    assert events[3].compute_task_output_asset.asset_key == second.key
    assert events[1].asset_key == f"{task.key}|models"
    assert [e.position for e in events] == list(range(before + 1, before + 5))

    assets = output_assets(ledger.org3, task.key)
    assert assets.total_size == 2
    assert [(a.identifier, a.kind, a.model) for a in assets.assets] == [
        ("models", res.ASSET_MODEL, first),
        ("models", res.ASSET_MODEL, second),
    ]
    # A later call adds to a multiple output.
    third = register_models(ledger.org2, new_model(task.key, "models"))[0]
    assert [a.model.key for a in output_assets(ledger.org1, task.key).assets] == [first.key, second.key, third.key]


# ------------------------------------------------------------------------------------- performances
def test_performance_registration(ledger):
    function = make_function(ledger.org1, io=SCORED_IO)
    plan = make_plan(ledger.org1)
    task = register(ledger.org1, spec(plan.key, function))[0]
    error = call_error(register_performance, ledger.org2, task.key, 0.5)
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "TASK_NOT_EXECUTING")
    act(ledger.org2, task.key, res.TASK_ACTION_EXECUTING)
    assert call_error(register_performance, ledger.org1, task.key, 0.5).code == grpc.StatusCode.PERMISSION_DENIED
    for identifier in ("model", "nope", ""):
        error = call_error(register_performance, ledger.org2, task.key, 0.5, identifier)
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT

    before = head(ledger.org1)
    performance = register_performance(ledger.org2, task.key, 0.75)
    assert (performance.compute_task_key, performance.compute_task_output_identifier) == (task.key, "performance")
    assert performance.performance_value == pytest.approx(0.75)
    events = events_after(ledger.org1, before)
    assert [(e.asset_kind, e.event_kind, e.asset_key) for e in events] == [
        (res.ASSET_PERFORMANCE, ev.EVENT_ASSET_CREATED, f"{task.key}|performance"),
        (res.ASSET_COMPUTE_TASK_OUTPUT_ASSET, ev.EVENT_ASSET_CREATED, f"{task.key}|performance"),
    ]
    assert events[0].performance == performance
    assert events[1].compute_task_output_asset.asset_kind == res.ASSET_PERFORMANCE

    error = call_error(register_performance, ledger.org2, task.key, 0.9)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    model = register_models(ledger.org2, new_model(task.key))[0]
    act(ledger.org2, task.key, res.TASK_ACTION_DONE)

    assets = output_assets(ledger.org1, task.key).assets
    assert [(a.identifier, a.kind) for a in assets] == [
        ("performance", res.ASSET_PERFORMANCE),
        ("model", res.ASSET_MODEL),
    ]
    assert assets[0].performance == performance and assets[1].model == model
    only = output_assets(ledger.org1, task.key, kind=res.ASSET_PERFORMANCE)
    assert [a.identifier for a in only.assets] == ["performance"] and only.total_size == 1
    assert [a.kind for a in output_assets(ledger.org1, task.key, identifier="model").assets] == [res.ASSET_MODEL]

    listed = ledger.org3.ListPerformances(api.ListPerformancesRequest(compute_plan_key=[plan.key]))
    assert list(listed.performances) == [performance]
    results = ledger.org3.GetComputePlanPerformances(api.GetComputePlanPerformancesRequest(key=plan.key))
    assert len(results.results) == 1
    result = results.results[0]
    assert (result.compute_task.key, result.compute_task.worker, result.identifier) == (
        task.key,
        ORGS[1],
        "performance",
    )
    assert result.perf == pytest.approx(0.75)
    assert list(results.compute_plan_statistics.compute_tasks_distinct_ranks) == [0]


def test_output_assets_of_an_unknown_task(ledger):
    assert call_error(output_assets, ledger.org1, new_key()).code == grpc.StatusCode.NOT_FOUND
    assert call_error(output_assets, ledger.org1, "nope").code == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------------------ transient outputs
def transient_pair(ledger, transient: bool = True, io=CHAIN_IO):
    """A parent run by org2 whose model output is (by default) transient, and its child, waiting."""
    function = make_function(ledger.org1, io=io)
    plan = make_plan(ledger.org1)
    parent = spec(plan.key, function, model=api.NewComputeTaskOutput(permissions=public(), transient=transient))
    child = spec(plan.key, function, parent.key)
    register(ledger.org1, parent, child)
    return plan, function, parent.key, child.key


def test_disable_output_success(ledger):
    org1, org2 = ledger.org1, ledger.org2
    plan, function, parent, child = transient_pair(ledger)
    act(org2, parent, res.TASK_ACTION_EXECUTING)
    error = call_error(disable, org2, parent)
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "TASK_NOT_FINAL")
    model = register_models(org2, new_model(parent))[0]
    act(org2, parent, res.TASK_ACTION_DONE)
    # The child has not consumed it yet.
    error = call_error(disable, org2, parent)
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "CHILDREN_NOT_FINAL")
    act(org2, child, res.TASK_ACTION_EXECUTING)
    assert reason_of(call_error(disable, org2, parent))[1] == "CHILDREN_NOT_FINAL"
    act(org2, child, res.TASK_ACTION_DONE)
    # Only the worker of the producing task disables, not the plan owner.
    assert call_error(disable, org1, parent).code == grpc.StatusCode.PERMISSION_DENIED
    assert call_error(disable, ledger.org3, parent).code == grpc.StatusCode.PERMISSION_DENIED
    assert call_error(disable, org2, parent, "nope").code == grpc.StatusCode.INVALID_ARGUMENT
    assert call_error(disable, org2, new_key()).code == grpc.StatusCode.NOT_FOUND

    check = api.CanProcessRequest(asset_kind=res.ASSET_MODEL, asset_key=model.key, organization_id=ORGS[0])
    assert not org2.CanProcess(check).disabled
    before = head(org1)
    disabled = disable(org2, parent)
    assert org2.CanProcess(check).disabled  # storage learns it with the permission, in one question
    assert [m.key for m in disabled] == [model.key] and not disabled[0].HasField("address")
    gone = org1.GetModel(api.GetModelRequest(key=model.key)).model
    assert not gone.HasField("address") and gone.permissions == model.permissions
    events = events_after(org1, before)
    assert [(e.asset_kind, e.event_kind, e.asset_key) for e in events] == [
        (res.ASSET_MODEL, ev.EVENT_ASSET_DISABLED, model.key)
    ]
    assert not events[0].model.HasField("address")
    assert not output_assets(org1, parent).assets[0].model.HasField("address")

    # Disabling twice is harmless: same answer, nothing new happens.
    position = head(org1)
    assert [m.key for m in disable(org2, parent)] == [model.key]
    assert head(org1) == position

    # No new task may consume the disabled model, neither from the parent nor by its key.
    error = call_error(register, org1, spec(plan.key, function, parent))
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "MODEL_DISABLED")
    by_key = task_spec(plan.key, function, [api.NewComputeTaskInput(identifier="model", asset_key=model.key)])
    by_key.worker = ORGS[1]
    error = call_error(register, org1, by_key)
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "MODEL_DISABLED")
    assert org1.GetComputePlan(api.GetComputePlanRequest(key=plan.key)).compute_plan.task_count == 2


def test_disable_output_after_a_canceled_child(ledger):
    """A canceled (or failed) child is final too: the model is no longer needed."""
    _, _, parent, child = transient_pair(ledger)
    act(ledger.org2, parent, res.TASK_ACTION_EXECUTING)
    register_models(ledger.org2, new_model(parent))
    act(ledger.org2, parent, res.TASK_ACTION_DONE)
    act(ledger.org1, child, res.TASK_ACTION_CANCELED)
    assert len(disable(ledger.org2, parent)) == 1


def test_disable_output_of_a_failed_task(ledger):
    """A failed producer is final; its already registered models can go once its children are final."""
    _, _, parent, child = transient_pair(ledger)
    act(ledger.org2, parent, res.TASK_ACTION_EXECUTING)
    register_models(ledger.org2, new_model(parent))
    act(ledger.org2, parent, res.TASK_ACTION_FAILED)
    assert status(ledger.org1, child) == res.STATUS_CANCELED
    assert len(disable(ledger.org2, parent)) == 1


def test_disable_output_refuses_a_kept_output(ledger):
    _, _, parent, child = transient_pair(ledger, transient=False)
    act(ledger.org2, parent, res.TASK_ACTION_EXECUTING)
    model = register_models(ledger.org2, new_model(parent))[0]
    act(ledger.org2, parent, res.TASK_ACTION_DONE)
    finish(ledger.org2, child)
    error = call_error(disable, ledger.org2, parent)
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_TRANSIENT")
    assert ledger.org1.GetModel(api.GetModelRequest(key=model.key)).model.HasField("address")


def test_disable_output_needs_a_model(ledger):
    _, _, parent, child = transient_pair(ledger)
    finish(ledger.org2, parent)
    finish(ledger.org2, child)
    error = call_error(disable, ledger.org2, parent)
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_MODEL")


def test_disable_output_needs_a_child(ledger):
    function = make_function(ledger.org1, io=CHAIN_IO)
    plan = make_plan(ledger.org1)
    lonely = spec(plan.key, function, model=api.NewComputeTaskOutput(permissions=public(), transient=True))
    register(ledger.org1, lonely)
    act(ledger.org2, lonely.key, res.TASK_ACTION_EXECUTING)
    register_models(ledger.org2, new_model(lonely.key))
    act(ledger.org2, lonely.key, res.TASK_ACTION_DONE)
    error = call_error(disable, ledger.org2, lonely.key)
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "NO_CHILD")


def test_disable_output_only_disables_models(ledger):
    _, _, parent, child = transient_pair(ledger, io=SCORED_IO)
    act(ledger.org2, parent, res.TASK_ACTION_EXECUTING)
    register_models(ledger.org2, new_model(parent))
    register_performance(ledger.org2, parent, 0.1)
    act(ledger.org2, parent, res.TASK_ACTION_DONE)
    finish(ledger.org2, child)
    error = call_error(disable, ledger.org2, parent, "performance")
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_MODEL_OUTPUT")
    assert len(disable(ledger.org2, parent, "model")) == 1


def test_a_performance_output_cannot_be_transient(ledger):
    function = make_function(ledger.org1, io=SCORED_IO)
    plan = make_plan(ledger.org1)
    bad = spec(plan.key, function, performance=api.NewComputeTaskOutput(permissions=public(), transient=True))
    error = call_error(register, ledger.org1, bad)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "tasks[0].outputs[performance].transient" in [v.field for v in error.violations]


# -------------------------------------------------------------------------------- input resolution
def test_input_assets_resolve_in_order(ledger):
    org1, org2 = ledger.org1, ledger.org2
    manager = make_data_manager(org2)
    first, second = make_samples(org2, manager.key)
    chain = make_function(org1, io=CHAIN_IO)
    multi = make_function(org1, io=MULTI_IO)
    train = make_function(org1, io=TRAIN_IO)
    plan = make_plan(org1)
    source = spec(plan.key, chain)
    producer = spec(plan.key, multi)
    register(org1, source, producer)
    act(org2, source.key, res.TASK_ACTION_EXECUTING)
    by_key = register_models(org2, new_model(source.key))[0]
    act(org2, source.key, res.TASK_ACTION_DONE)

    consumer = task_spec(
        plan.key,
        train,
        [
            api.NewComputeTaskInput(identifier="models", asset_key=by_key.key),
            *data_inputs(manager.key, [second, first]),
            parent_input("models", producer.key, "models"),
        ],
    )
    assert register(org1, consumer)[0].status == res.STATUS_WAITING_FOR_PARENT_TASKS
    error = call_error(input_assets, org1, consumer.key)
    assert reason_of(error) == (grpc.StatusCode.FAILED_PRECONDITION, "INPUTS_NOT_DEFINED")

    act(org2, producer.key, res.TASK_ACTION_EXECUTING)
    produced = register_models(org2, new_model(producer.key, "models"), new_model(producer.key, "models"))
    act(org2, producer.key, res.TASK_ACTION_DONE)
    assert status(org1, consumer.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT

    resolved = input_assets(org2, consumer.key)
    assert resolved.total_size == 6
    assert [(a.identifier, a.kind, a.WhichOneof("asset")) for a in resolved.assets] == [
        ("models", res.ASSET_MODEL, "model"),
        ("opener", res.ASSET_DATA_MANAGER, "data_manager"),
        ("datasamples", res.ASSET_DATA_SAMPLE, "data_sample"),
        ("datasamples", res.ASSET_DATA_SAMPLE, "data_sample"),
        ("models", res.ASSET_MODEL, "model"),
        ("models", res.ASSET_MODEL, "model"),
    ]
    assets = resolved.assets
    assert assets[0].model == by_key
    assert assets[1].data_manager.key == manager.key and assets[1].data_manager.opener == manager.opener
    assert [assets[2].data_sample.key, assets[3].data_sample.key] == [second.key, first.key]
    assert [assets[4].model, assets[5].model] == produced

    models = input_assets(org2, consumer.key, identifier="models")
    assert [a.model.key for a in models.assets] == [by_key.key, *(m.key for m in produced)]
    samples = input_assets(org2, consumer.key, kind=res.ASSET_DATA_SAMPLE)
    assert [a.data_sample.key for a in samples.assets] == [second.key, first.key]
    page = input_assets(org2, consumer.key, page_size=4)
    assert len(page.assets) == 4 and page.total_size == 6 and page.next_page_token
    rest = input_assets(org2, consumer.key, page_size=4, page_token=page.next_page_token)
    assert [a.model for a in rest.assets] == produced and not rest.next_page_token

    # Still readable while it runs and after.
    act(org2, consumer.key, res.TASK_ACTION_EXECUTING)
    assert input_assets(org2, consumer.key).total_size == 6
    assert call_error(input_assets, org1, new_key()).code == grpc.StatusCode.NOT_FOUND


def test_input_assets_of_tasks_that_will_not_run(ledger):
    waiting = make_function(ledger.org1, io=CHAIN_IO, ready=False)
    plan = make_plan(ledger.org1)
    unbuilt = register(ledger.org1, spec(plan.key, waiting))[0]
    assert unbuilt.status == res.STATUS_WAITING_FOR_BUILDER_SLOT
    assert reason_of(call_error(input_assets, ledger.org1, unbuilt.key))[1] == "INPUTS_NOT_DEFINED"
    act(ledger.org1, unbuilt.key, res.TASK_ACTION_CANCELED)
    assert reason_of(call_error(input_assets, ledger.org1, unbuilt.key))[1] == "INPUTS_NOT_DEFINED"


# -------------------------------------------------------------------------------- permission checks
def test_can_process_a_model(ledger):
    shared = executing(ledger, model=api.NewComputeTaskOutput(permissions=private(ORGS[1])))
    model = register_models(ledger.org2, new_model(shared.key))[0]
    for download in (False, True):
        assert can_process(ledger.org3, res.ASSET_MODEL, model.key, ORGS[0], download)
        assert can_process(ledger.org3, res.ASSET_MODEL, model.key, ORGS[1], download)
        assert not can_process(ledger.org1, res.ASSET_MODEL, model.key, ORGS[2], download)
    opened = executing(ledger)
    model = register_models(ledger.org2, new_model(opened.key))[0]
    assert can_process(ledger.org1, res.ASSET_MODEL, model.key, ORGS[2])
    assert can_process(ledger.org1, res.ASSET_MODEL, model.key, ORGS[2], download=True)


def test_can_process_functions_data_managers_and_samples(ledger):
    function = make_function(ledger.org1, permissions=private(ORGS[1]), ready=False)
    assert can_process(ledger.org2, res.ASSET_FUNCTION, function.key, ORGS[0])
    assert can_process(ledger.org2, res.ASSET_FUNCTION, function.key, ORGS[1])
    assert not can_process(ledger.org2, res.ASSET_FUNCTION, function.key, ORGS[2])
    opened = make_function(ledger.org1, ready=False)
    assert can_process(ledger.org2, res.ASSET_FUNCTION, opened.key, ORGS[2])

    manager = make_data_manager(ledger.org2, permissions=private(ORGS[0]))
    assert can_process(ledger.org1, res.ASSET_DATA_MANAGER, manager.key, ORGS[0])
    assert can_process(ledger.org1, res.ASSET_DATA_MANAGER, manager.key, ORGS[1])
    assert not can_process(ledger.org1, res.ASSET_DATA_MANAGER, manager.key, ORGS[2])

    # Data samples never leave their organization, however open their data manager is.
    opened_manager = make_data_manager(ledger.org2)
    sample = make_samples(ledger.org2, opened_manager.key, 1)[0]
    assert can_process(ledger.org1, res.ASSET_DATA_SAMPLE, sample.key, ORGS[1])
    assert not can_process(ledger.org2, res.ASSET_DATA_SAMPLE, sample.key, ORGS[0])
    assert not can_process(ledger.org2, res.ASSET_DATA_SAMPLE, sample.key, ORGS[2])


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        (res.ASSET_MODEL, grpc.StatusCode.NOT_FOUND),
        (res.ASSET_FUNCTION, grpc.StatusCode.NOT_FOUND),
        (res.ASSET_DATA_MANAGER, grpc.StatusCode.NOT_FOUND),
        (res.ASSET_DATA_SAMPLE, grpc.StatusCode.NOT_FOUND),
        (res.ASSET_COMPUTE_TASK, grpc.StatusCode.INVALID_ARGUMENT),
        (res.ASSET_UNKNOWN, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_can_process_unknown_assets(ledger, kind, code):
    assert call_error(can_process, ledger.org1, kind, new_key(), ORGS[0]).code == code


def test_can_process_refuses_a_malformed_key(ledger):
    error = call_error(can_process, ledger.org1, res.ASSET_MODEL, "nope", ORGS[0])
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


def test_logs_follow_the_data_manager_then_the_parents(ledger):
    org1, org2 = ledger.org1, ledger.org2
    manager = make_data_manager(org2, logs=private(ORGS[0]))
    samples = make_samples(org2, manager.key)
    train = make_function(org1)
    chain = make_function(org1, io=CHAIN_IO)
    plan = make_plan(org1)
    trained = task_spec(plan.key, train, data_inputs(manager.key, samples))
    follower = spec(plan.key, chain, trained.key, worker=ORGS[2])
    created = {t.key: t for t in register(org1, trained, follower)}
    assert created[trained.key].logs_permission == res.Permission(authorized_ids=[ORGS[0], ORGS[1]])
    assert can_access_logs(ledger.org3, trained.key, ORGS[0])
    assert can_access_logs(ledger.org3, trained.key, ORGS[1])
    assert not can_access_logs(ledger.org1, trained.key, ORGS[2])
    # Without a data manager: private to the task owner, plus what the parents allow.
    assert created[follower.key].logs_permission == res.Permission(authorized_ids=[ORGS[0], ORGS[1]])
    assert can_access_logs(ledger.org1, follower.key, ORGS[1])
    assert not can_access_logs(ledger.org1, follower.key, ORGS[2])  # not even its worker

    opened = make_data_manager(org1, logs=public())
    opened_samples = make_samples(org1, opened.key)
    public_task = register(org1, task_spec(plan.key, train, data_inputs(opened.key, opened_samples)))[0]
    assert can_access_logs(ledger.org2, public_task.key, ORGS[2])
    assert call_error(can_access_logs, org1, new_key(), ORGS[0]).code == grpc.StatusCode.NOT_FOUND


def test_build_failure_logs_follow_the_function_permission(ledger):
    org1 = ledger.org1
    function = make_function(org1, permissions=private(ORGS[1]), ready=False)
    manager = make_data_manager(org1, logs=public())
    samples = make_samples(org1, manager.key)
    plan = make_plan(org1)
    task = register(org1, task_spec(plan.key, function, data_inputs(manager.key, samples)))[0]
    assert can_access_logs(org1, task.key, ORGS[2])  # the data manager's logs are public
    org1.ApplyFunctionAction(
        api.ApplyFunctionActionRequest(function_key=function.key, action=res.FUNCTION_ACTION_BUILDING)
    )
    org1.RegisterFailureReport(
        api.RegisterFailureReportRequest(
            asset_key=function.key,
            asset_type=res.FAILED_ASSET_FUNCTION,
            error_type=res.BUILD_ERROR,
            logs_address=address("logs"),
        )
    )
    assert status(org1, task.key) == res.STATUS_FAILED
    # The logs are the build's: whoever may process the function reads them, no one else.
    assert can_access_logs(ledger.org3, task.key, ORGS[1])
    assert not can_access_logs(ledger.org3, task.key, ORGS[2])
    # Asked about the function itself (its failure report's asset), the same rule applies.
    assert can_access_logs(ledger.org3, function.key, ORGS[0])
    assert can_access_logs(ledger.org3, function.key, ORGS[1])
    assert not can_access_logs(ledger.org3, function.key, ORGS[2])


# ------------------------------------------------------------------------------------ profiling steps
def profile(stub, key: str, step: str, duration: int) -> res.ProfilingStep:
    request = api.RegisterProfilingStepRequest(asset_key=key, step=step, duration=duration)
    return stub.RegisterProfilingStep(request).profiling_step


def steps_of(stub, key: str) -> list[tuple[str, int]]:
    listed = stub.ListProfilingSteps(api.ListProfilingStepsRequest(asset_key=key))
    return [(s.step, s.duration) for s in listed.profiling_steps]


def test_function_build_profiling(ledger):
    function = make_function(ledger.org1, ready=False)
    before = head(ledger.org1)
    step = profile(ledger.org1, function.key, "build_image", 3_000_000)
    assert (step.asset_key, step.step, step.duration) == (function.key, "build_image", 3_000_000)
    profile(ledger.org1, function.key, "save_function", 1200)
    events = events_after(ledger.org1, before)
    assert [(e.asset_kind, e.event_kind, e.asset_key) for e in events] == [
        (res.ASSET_PROFILING_STEP, ev.EVENT_ASSET_CREATED, function.key)
    ] * 2
    assert events[0].profiling_step == step

    assert call_error(profile, ledger.org2, function.key, "push", 1).code == grpc.StatusCode.PERMISSION_DENIED
    error = call_error(profile, ledger.org1, function.key, "build_image", 5)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert steps_of(ledger.org2, function.key) == [("build_image", 3_000_000), ("save_function", 1200)]


def test_task_profiling(ledger):
    task = executing(ledger)
    profile(ledger.org2, task.key, "prepare_inputs", 10)
    profile(ledger.org2, task.key, "task_execution", 20)
    profile(ledger.org2, task.key, "save_outputs", 5)
    assert call_error(profile, ledger.org1, task.key, "save_outputs", 1).code == grpc.StatusCode.PERMISSION_DENIED
    assert call_error(profile, ledger.org2, task.key, "prepare_inputs", 1).code == grpc.StatusCode.ALREADY_EXISTS
    # Listed as they were taken (Substra's rundown), not by name.
    assert steps_of(ledger.org1, task.key) == [("prepare_inputs", 10), ("task_execution", 20), ("save_outputs", 5)]


@pytest.mark.parametrize(
    ("key", "step", "duration", "code"),
    [
        (None, "step", 1, grpc.StatusCode.NOT_FOUND),
        ("nope", "step", 1, grpc.StatusCode.INVALID_ARGUMENT),
        ("function", "", 1, grpc.StatusCode.INVALID_ARGUMENT),
        ("function", "x" * 101, 1, grpc.StatusCode.INVALID_ARGUMENT),
        ("function", "step", -1, grpc.StatusCode.INVALID_ARGUMENT),
    ],
    ids=["unknown", "malformed-key", "no-step", "long-step", "negative"],
)
def test_profiling_step_refusals(ledger, key, step, duration, code):
    function = make_function(ledger.org1, ready=False)
    key = function.key if key == "function" else key or new_key()
    assert call_error(profile, ledger.org1, key, step, duration).code == code
    assert steps_of(ledger.org1, function.key) == []
