"""The declared order of every map survives PostgreSQL (a JSONB object keeps none) and is what every
read answers: a protobuf map has no order of its own, so the ledger records it beside each map."""

from __future__ import annotations

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res

from tests.integration.ledger.conftest import (
    address,
    build_function,
    make_data_manager,
    make_plan,
    new_key,
    public,
    task_spec,
)

INPUTS = ["zeta", "models", "alpha", "middle"]
OUTPUTS = ["model", "omega", "aux"]
METADATA = {"zulu": "1", "alpha": "2", "mike": "3", "bravo": "4"}


def _function(stub, **orders) -> res.Function:
    request = api.RegisterFunctionRequest(
        key=new_key(),
        name="ordered",
        description=address("description"),
        archive=address("archive"),
        permissions=public(),
        metadata=METADATA,
        inputs={name: res.FunctionInput(kind=res.ASSET_MODEL, optional=True) for name in INPUTS},
        outputs={name: res.FunctionOutput(kind=res.ASSET_MODEL) for name in OUTPUTS},
        **orders,
    )
    return stub.RegisterFunction(request).function


def test_a_function_is_read_back_with_its_declared_order(ledger):
    key = _function(ledger.org1, inputs_order=INPUTS, outputs_order=OUTPUTS, metadata_order=list(METADATA)).key
    listed = ledger.org2.ListFunctions(api.ListFunctionsRequest(key=[key])).functions
    for function in (ledger.org2.GetFunction(api.GetFunctionRequest(key=key)).function, *listed):
        assert (list(function.inputs_order), list(function.outputs_order)) == (INPUTS, OUTPUTS)
        assert list(function.metadata_order) == list(METADATA)


def test_without_a_declared_order_the_keys_are_recorded_sorted(ledger):
    function = _function(ledger.org1)
    assert list(function.inputs_order) == sorted(INPUTS) and list(function.metadata_order) == sorted(METADATA)


def test_data_managers_plans_and_tasks_keep_their_declared_order(ledger):
    manager = make_data_manager(ledger.org1, metadata=METADATA, metadata_order=list(METADATA))
    got = ledger.org2.GetDataManager(api.GetDataManagerRequest(key=manager.key)).data_manager
    assert list(got.metadata_order) == list(METADATA)
    plan = make_plan(ledger.org1, metadata=METADATA, metadata_order=list(METADATA))
    assert list(ledger.org2.GetComputePlan(api.GetComputePlanRequest(key=plan.key)).compute_plan.metadata_order) == (
        list(METADATA)
    )
    function = _function(ledger.org1, outputs_order=OUTPUTS)
    build_function(ledger.org1, function.key)
    spec = task_spec(plan.key, function, [], worker="MyOrg1MSP")
    spec.metadata.update(METADATA)
    spec.metadata_order[:] = list(METADATA)
    spec.outputs_order[:] = ["aux", "omega", "model"]
    ledger.org1.RegisterTasks(api.RegisterTasksRequest(tasks=[spec]))
    task = ledger.org2.GetTask(api.GetTaskRequest(key=spec.key)).task
    assert list(task.metadata_order) == list(METADATA) and list(task.outputs_order) == ["aux", "omega", "model"]
    assert list(task.function.outputs_order) == OUTPUTS
