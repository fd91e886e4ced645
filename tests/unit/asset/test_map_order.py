"""A protobuf map has no order (Python's differs from one process to another): the ledger records the
order in which each map's keys were declared, so that every organization lists them the same way."""

from __future__ import annotations

from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import datasets, functions, plans, tasks
from services.asset.domain.common import in_declared_order
from tests.unit.asset.conftest import ORG1, public

INPUTS = ["opener", "datasamples", "zeta", "models", "alpha"]
OUTPUTS = ["model", "omega", "aux"]
METADATA = {"zulu": "1", "alpha": "2", "mike": "3"}


def test_declared_keys_come_first_in_their_order_then_the_others_sorted():
    mapping = {"b": 1, "a": 2, "d": 3, "c": 4}
    assert list(in_declared_order(mapping, ["d", "b", "gone", "d"])) == ["d", "b", "a", "c"]
    assert list(in_declared_order(mapping, [])) == ["a", "b", "c", "d"]
    assert in_declared_order(mapping, ["c"]) == mapping  # the same entries, only their order changes


def _function(ledger) -> res.Function:
    kinds = {"opener": res.ASSET_DATA_MANAGER, "datasamples": res.ASSET_DATA_SAMPLE}
    new = functions.NewFunction(
        key=ledger.key(),
        name="ordered",
        description=ledger.address("description"),
        archive=ledger.address("archive"),
        permissions=public(),
        metadata=dict(METADATA),
        inputs={
            name: res.FunctionInput(kind=kinds.get(name, res.ASSET_MODEL), multiple=name == "datasamples")
            for name in INPUTS
        },
        outputs={name: res.FunctionOutput(kind=res.ASSET_MODEL) for name in OUTPUTS},
    )
    return ledger.write(ORG1, lambda ctx: functions.register_function(ctx, new))


def test_a_function_keeps_the_order_of_its_inputs_outputs_and_metadata(ledger):
    registered = _function(ledger)
    read = ledger.read(ORG1, lambda ctx: functions.get_function(ctx, registered.key))
    for function in (registered, read, ledger.events()[-1].function):
        assert list(function.inputs_order) == INPUTS
        assert list(function.outputs_order) == OUTPUTS
        assert list(function.metadata_order) == list(METADATA)


def test_a_rename_keeps_the_order(ledger):
    key = _function(ledger).key
    ledger.write(ORG1, lambda ctx: functions.update_function(ctx, key, name="renamed"))
    assert list(ledger.read(ORG1, lambda ctx: functions.get_function(ctx, key)).inputs_order) == INPUTS


def test_a_data_manager_and_a_plan_keep_the_order_of_their_metadata(ledger):
    new = datasets.NewDataManager(
        key=ledger.key(),
        name="dataset",
        description=ledger.address("description"),
        opener=ledger.address("opener"),
        permissions=public(),
        logs_permission=public(),
        metadata=dict(METADATA),
    )
    manager = ledger.write(ORG1, lambda ctx: datasets.register_data_manager(ctx, new))
    read = ledger.read(ORG1, lambda ctx: datasets.get_data_manager(ctx, manager.key))
    assert list(manager.metadata_order) == list(read.metadata_order) == list(METADATA)
    plan = ledger.write(
        ORG1, lambda ctx: plans.register_plan(ctx, plans.NewPlan(key=ledger.key(), name="p", metadata=dict(METADATA)))
    )
    assert list(plan.metadata_order) == list(ledger.plan(plan.key).metadata_order) == list(METADATA)


def test_a_task_keeps_the_order_of_its_metadata_and_outputs_as_its_request_gives_them(ledger):
    function = ledger.function(
        io={"inputs": {}, "outputs": {name: res.FunctionOutput(kind=res.ASSET_MODEL) for name in OUTPUTS}}
    )
    plan = ledger.compute_plan()
    declared = ["aux", "model", "omega"]
    new = tasks.NewTask(
        key=ledger.key(),
        compute_plan_key=plan.key,
        function_key=function.key,
        worker=ORG1,
        metadata=dict(METADATA),
        outputs={name: tasks.NewTaskOutput(permissions=public()) for name in declared},
    )
    (task,) = ledger.register(ORG1, new)
    for found in (task, ledger.task(task.key)):
        assert list(found.metadata_order) == list(METADATA)
        assert list(found.outputs_order) == declared
