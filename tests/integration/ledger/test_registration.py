"""Registration and validation rules of the ledger (domain §1, §3): data managers, data samples,
functions, compute plans, task batches, and channel isolation.

Every refusal asserts the gRPC code and, for INVALID_ARGUMENT, the field path of the BadRequest
violation; every refused write is checked to have registered nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc
import pytest
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc
from tessera.asset.v1 import resources_pb2 as res

from services.kit.client import sync_channel
from services.kit.identity import OrgCredentials
from tests.integration.ledger.conftest import (
    AGGREGATE_IO,
    ORGS,
    SECRETS,
    TEST_IO,
    act,
    address,
    call_error,
    checksum,
    data_inputs,
    make_data_manager,
    make_function,
    make_plan,
    make_samples,
    new_key,
    parent_input,
    private,
    public,
    run_task,
    task_spec,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
EXISTS = grpc.StatusCode.ALREADY_EXISTS
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION

SOURCE_IO = {"inputs": {}, "outputs": {"model": res.FunctionOutput(kind=res.ASSET_MODEL)}}
MULTI_OUT_IO = {"inputs": {}, "outputs": {"model": res.FunctionOutput(kind=res.ASSET_MODEL, multiple=True)}}


def fields(error) -> list[str]:
    """The field paths of the violations of a failed call."""
    return [v.field for v in error.violations]


def register(stub, *specs) -> list[res.ComputeTask]:
    return list(stub.RegisterTasks(api.RegisterTasksRequest(tasks=list(specs))).tasks)


def task_count(stub, plan_key: str) -> int:
    return stub.ListTasks(api.ListTasksRequest(compute_plan_key=[plan_key])).total_size


def get_plan(stub, key: str) -> res.ComputePlan:
    return stub.GetComputePlan(api.GetComputePlanRequest(key=key)).compute_plan


def get_task(stub, key: str) -> res.ComputeTask:
    return stub.GetTask(api.GetTaskRequest(key=key)).task


def event_count(stub) -> int:
    return stub.QueryEvents(api.QueryEventsRequest(page_size=1)).total_size


def dm_request(**overrides) -> api.RegisterDataManagerRequest:
    values = {
        "key": new_key(),
        "name": "dataset",
        "description": address("description"),
        "opener": address("opener"),
        "type": "csv",
        "permissions": public(),
        "logs_permission": public(),
    }
    values.update(overrides)
    return api.RegisterDataManagerRequest(**values)


def function_request(inputs=None, outputs=None, **overrides) -> api.RegisterFunctionRequest:
    values = {
        "key": new_key(),
        "name": "function",
        "description": address("description"),
        "archive": address("archive"),
        "permissions": public(),
    }
    values.update(overrides)
    return api.RegisterFunctionRequest(
        inputs=SOURCE_IO["inputs"] if inputs is None else inputs,
        outputs=SOURCE_IO["outputs"] if outputs is None else outputs,
        **values,
    )


# ============================================================================================ data managers
LONG = "x" * 101


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"key": "not-a-uuid"}, "key"),
        ({"name": ""}, "name"),
        ({"name": LONG}, "name"),
        ({"type": LONG}, "type"),
        ({"description": res.Addressable()}, "description"),
        ({"description": res.Addressable(checksum="abc", storage_address="http://x.test/d")}, "description.checksum"),
        ({"opener": res.Addressable(checksum=checksum(), storage_address="ftp://x.test/o")}, "opener.storage_address"),
        ({"opener": res.Addressable(checksum=checksum().upper(), storage_address="http://x/o")}, "opener.checksum"),
        ({"metadata": {"a__b": "v"}}, "metadata[a__b]"),
        ({"metadata": {"__tag__": "v"}}, "metadata[__tag__]"),
        ({"metadata": {LONG: "v"}}, f"metadata[{LONG}]"),
        ({"metadata": {"k": LONG}}, "metadata[k]"),
        ({"permissions": private("NopeMSP")}, "permissions.authorized_ids[0]"),
        ({"permissions": private(ORGS[1], "NopeMSP")}, "permissions.authorized_ids[1]"),
        ({"logs_permission": private("NopeMSP")}, "logs_permission.authorized_ids[0]"),
        ({"logs_permission": None}, "logs_permission"),
    ],
)
def test_data_manager_invalid_fields_are_named(ledger, overrides, field):
    request = dm_request(**overrides)
    if "logs_permission" in overrides and overrides["logs_permission"] is None:
        request.ClearField("logs_permission")
    error = call_error(ledger.org1.RegisterDataManager, request)
    assert error.code == INVALID
    assert field in fields(error)
    if "key" not in overrides:
        missing = call_error(ledger.org1.GetDataManager, api.GetDataManagerRequest(key=request.key))
        assert missing.code == NOT_FOUND


def test_data_manager_reports_every_violation_at_once(ledger):
    request = dm_request(key="nope", name="", metadata={"a__b": "v"})
    error = call_error(ledger.org1.RegisterDataManager, request)
    assert error.code == INVALID
    assert {"key", "name", "metadata[a__b]"} <= set(fields(error))


def test_data_manager_duplicate_key_is_already_exists(ledger):
    manager = make_data_manager(ledger.org1)
    error = call_error(ledger.org2.RegisterDataManager, dm_request(key=manager.key, name="other"))
    assert error.code == EXISTS
    assert error.metadata["keys"] == manager.key
    # The original is untouched.
    found = ledger.org1.GetDataManager(api.GetDataManagerRequest(key=manager.key)).data_manager
    assert (found.owner, found.name) == (ORGS[0], "dataset")


def test_data_manager_keys_are_normalized_to_lowercase(ledger):
    key = new_key().upper()
    manager = ledger.org1.RegisterDataManager(dm_request(key=key)).data_manager
    assert manager.key == key.lower()
    assert ledger.org2.GetDataManager(api.GetDataManagerRequest(key=key)).data_manager.key == key.lower()
    assert call_error(ledger.org1.RegisterDataManager, dm_request(key=key.lower())).code == EXISTS


def test_data_manager_owner_is_appended_and_download_equals_process(ledger):
    manager = make_data_manager(ledger.org1, permissions=private(ORGS[1]), logs=private(ORGS[2]))
    assert manager.owner == ORGS[0]
    assert not manager.permissions.process.public
    assert sorted(manager.permissions.process.authorized_ids) == [ORGS[0], ORGS[1]]
    assert manager.permissions.download == manager.permissions.process
    assert sorted(manager.logs_permission.authorized_ids) == [ORGS[0], ORGS[2]]
    # Even a public permission lists the owner; an empty private one is the owner alone.
    shared = make_data_manager(ledger.org2, permissions=public(), logs=private())
    assert shared.permissions.process.public and list(shared.permissions.process.authorized_ids) == [ORGS[1]]
    assert list(shared.logs_permission.authorized_ids) == [ORGS[1]] and not shared.logs_permission.public
    # What the registration answers is what every organization reads.
    read = ledger.org3.GetDataManager(api.GetDataManagerRequest(key=manager.key)).data_manager
    assert read.permissions == manager.permissions and read.logs_permission == manager.logs_permission
    assert read.creation_date == manager.creation_date


def test_data_manager_rename_is_owner_only(ledger):
    manager = make_data_manager(ledger.org1)
    ledger.org1.UpdateDataManager(api.UpdateDataManagerRequest(key=manager.key, name="renamed"))
    assert ledger.org2.GetDataManager(api.GetDataManagerRequest(key=manager.key)).data_manager.name == "renamed"

    error = call_error(ledger.org2.UpdateDataManager, api.UpdateDataManagerRequest(key=manager.key, name="mine"))
    assert error.code == DENIED
    error = call_error(ledger.org1.UpdateDataManager, api.UpdateDataManagerRequest(key=manager.key, name=""))
    assert error.code == INVALID and fields(error) == ["name"]
    error = call_error(ledger.org1.UpdateDataManager, api.UpdateDataManagerRequest(key=new_key(), name="x"))
    assert error.code == NOT_FOUND
    error = call_error(ledger.org1.UpdateDataManager, api.UpdateDataManagerRequest(key="bad", name="x"))
    assert error.code == INVALID and fields(error) == ["key"]
    assert ledger.org1.GetDataManager(api.GetDataManagerRequest(key=manager.key)).data_manager.name == "renamed"


def test_unknown_data_manager_is_not_found(ledger):
    assert call_error(ledger.org1.GetDataManager, api.GetDataManagerRequest(key=new_key())).code == NOT_FOUND
    error = call_error(ledger.org1.GetDataManager, api.GetDataManagerRequest(key="nope"))
    assert error.code == INVALID and fields(error) == ["key"]


# ============================================================================================= data samples
def new_sample(*manager_keys: str, key: str | None = None) -> api.NewDataSample:
    return api.NewDataSample(key=key or new_key(), data_manager_keys=list(manager_keys), checksum=checksum())


def register_samples(stub, *samples) -> list[res.DataSample]:
    return list(stub.RegisterDataSamples(api.RegisterDataSamplesRequest(data_samples=list(samples))).data_samples)


def sample_exists(stub, key: str) -> bool:
    try:
        stub.GetDataSample(api.GetDataSampleRequest(key=key))
    except grpc.RpcError as error:
        assert error.code() == NOT_FOUND
        return False
    return True


def test_data_samples_register_in_batches(ledger):
    dm1, dm2 = make_data_manager(ledger.org1), make_data_manager(ledger.org1)
    batch = [new_sample(dm1.key), new_sample(dm1.key, dm2.key), new_sample(dm2.key)]
    created = register_samples(ledger.org1, *batch)
    assert [s.key for s in created] == [s.key for s in batch]
    assert all(s.owner == ORGS[0] and s.HasField("creation_date") for s in created)
    assert list(created[1].data_manager_keys) == [dm1.key, dm2.key]
    assert created[0].checksum == batch[0].checksum
    linked = ledger.org2.GetDataManager(api.GetDataManagerRequest(key=dm1.key)).data_manager
    assert sorted(linked.data_sample_keys) == sorted([batch[0].key, batch[1].key])
    assert ledger.org3.GetDataSample(api.GetDataSampleRequest(key=batch[2].key)).data_sample == created[2]


def test_data_samples_require_owning_every_data_manager(ledger):
    mine, theirs = make_data_manager(ledger.org2), make_data_manager(ledger.org1)
    sample = new_sample(theirs.key)
    assert (
        call_error(ledger.org2.RegisterDataSamples, api.RegisterDataSamplesRequest(data_samples=[sample])).code
        == DENIED
    )
    # One foreign manager among owned ones refuses the whole batch.
    batch = [new_sample(mine.key), new_sample(mine.key, theirs.key)]
    error = call_error(ledger.org2.RegisterDataSamples, api.RegisterDataSamplesRequest(data_samples=batch))
    assert error.code == DENIED
    assert not any(sample_exists(ledger.org2, s.key) for s in [sample, *batch])


def test_data_samples_with_unknown_data_manager_are_not_found(ledger):
    manager = make_data_manager(ledger.org1)
    unknown = new_key()
    batch = [new_sample(manager.key), new_sample(manager.key), new_sample(manager.key, unknown)]
    error = call_error(ledger.org1.RegisterDataSamples, api.RegisterDataSamplesRequest(data_samples=batch))
    assert error.code == NOT_FOUND and error.metadata["keys"] == unknown
    # All or nothing: the valid items were not registered either.
    assert not any(sample_exists(ledger.org1, s.key) for s in batch)


def test_data_samples_duplicates_are_listed(ledger):
    manager = make_data_manager(ledger.org1)
    first = make_samples(ledger.org1, manager.key, n=2)
    fresh = new_sample(manager.key)
    again = [fresh, new_sample(manager.key, key=first[1].key), new_sample(manager.key, key=first[0].key)]
    error = call_error(ledger.org1.RegisterDataSamples, api.RegisterDataSamplesRequest(data_samples=again))
    assert error.code == EXISTS
    assert error.metadata["keys"] == ",".join(sorted(s.key for s in first))
    assert not sample_exists(ledger.org1, fresh.key)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda batch: setattr(batch[1], "key", "nope"), "data_samples[1].key"),
        (lambda batch: setattr(batch[0], "checksum", "short"), "data_samples[0].checksum"),
        (lambda batch: setattr(batch[1], "checksum", "z" * 64), "data_samples[1].checksum"),
        (lambda batch: batch[1].ClearField("data_manager_keys"), "data_samples[1].data_manager_keys"),
        (lambda batch: batch[0].data_manager_keys.append("nope"), "data_samples[0].data_manager_keys[1]"),
        (lambda batch: setattr(batch[1], "key", batch[0].key), "data_samples"),
        (lambda batch: batch.clear(), "data_samples"),
    ],
)
def test_data_samples_invalid_fields_are_named(ledger, mutate, field):
    manager = make_data_manager(ledger.org1)
    batch = [new_sample(manager.key), new_sample(manager.key)]
    keys = [s.key for s in batch]
    mutate(batch)
    error = call_error(ledger.org1.RegisterDataSamples, api.RegisterDataSamplesRequest(data_samples=batch))
    assert error.code == INVALID
    assert field in fields(error)
    assert not any(sample_exists(ledger.org1, k) for k in keys)


def test_link_data_samples_adds_links_only(ledger):
    dm1, dm2, dm3 = (make_data_manager(ledger.org1) for _ in range(3))
    samples = make_samples(ledger.org1, dm1.key, n=2)
    keys = [s.key for s in samples]
    linked = ledger.org1.LinkDataSamples(api.LinkDataSamplesRequest(data_manager_keys=[dm2.key], data_sample_keys=keys))
    assert [list(s.data_manager_keys) for s in linked.data_samples] == [[dm1.key, dm2.key]] * 2
    # Linking to another manager keeps the previous links; linking again changes nothing.
    ledger.org1.LinkDataSamples(api.LinkDataSamplesRequest(data_manager_keys=[dm3.key], data_sample_keys=keys[:1]))
    again = ledger.org1.LinkDataSamples(api.LinkDataSamplesRequest(data_manager_keys=[dm2.key], data_sample_keys=keys))
    assert [list(s.data_manager_keys) for s in again.data_samples] == [[dm1.key, dm2.key, dm3.key], [dm1.key, dm2.key]]
    read = ledger.org2.GetDataSample(api.GetDataSampleRequest(key=keys[0])).data_sample
    assert list(read.data_manager_keys) == [dm1.key, dm2.key, dm3.key]
    assert sorted(ledger.org1.GetDataManager(api.GetDataManagerRequest(key=dm2.key)).data_manager.data_sample_keys) == (
        sorted(keys)
    )


def test_link_data_samples_is_for_the_owner_of_both(ledger):
    dm1, dm1b = make_data_manager(ledger.org1), make_data_manager(ledger.org1)
    dm2 = make_data_manager(ledger.org2)
    own = make_samples(ledger.org1, dm1.key, n=1)[0]
    foreign = make_samples(ledger.org2, dm2.key, n=1)[0]
    link = ledger.org1.LinkDataSamples
    # A manager of another organization.
    error = call_error(link, api.LinkDataSamplesRequest(data_manager_keys=[dm2.key], data_sample_keys=[own.key]))
    assert error.code == DENIED
    # A sample of another organization: nothing is linked, not even the caller's own sample.
    error = call_error(
        link, api.LinkDataSamplesRequest(data_manager_keys=[dm1b.key], data_sample_keys=[own.key, foreign.key])
    )
    assert error.code == DENIED
    assert list(ledger.org1.GetDataSample(api.GetDataSampleRequest(key=own.key)).data_sample.data_manager_keys) == [
        dm1.key
    ]
    error = call_error(link, api.LinkDataSamplesRequest(data_manager_keys=[new_key()], data_sample_keys=[own.key]))
    assert error.code == NOT_FOUND
    error = call_error(link, api.LinkDataSamplesRequest(data_manager_keys=[dm1b.key], data_sample_keys=[new_key()]))
    assert error.code == NOT_FOUND
    error = call_error(link, api.LinkDataSamplesRequest(data_manager_keys=[dm1b.key], data_sample_keys=[]))
    assert error.code == INVALID and fields(error) == ["data_sample_keys"]
    error = call_error(link, api.LinkDataSamplesRequest(data_manager_keys=[dm1b.key], data_sample_keys=["x"]))
    assert error.code == INVALID and fields(error) == ["data_sample_keys[0]"]


# ================================================================================================ functions
M = res.ASSET_MODEL
DM = res.ASSET_DATA_MANAGER
DS = res.ASSET_DATA_SAMPLE
PERF = res.ASSET_PERFORMANCE


def fin(kind, multiple=False, optional=False) -> res.FunctionInput:
    return res.FunctionInput(kind=kind, multiple=multiple, optional=optional)


def fout(kind, multiple=False) -> res.FunctionOutput:
    return res.FunctionOutput(kind=kind, multiple=multiple)


@pytest.mark.parametrize(
    ("inputs", "outputs", "field"),
    [
        ({"opener": fin(DM, multiple=True), "data": fin(DS)}, {}, "inputs[opener]"),
        ({"opener": fin(DM, optional=True), "data": fin(DS)}, {}, "inputs[opener]"),
        ({"a": fin(DM), "b": fin(DM), "data": fin(DS)}, {}, "inputs"),
        ({"opener": fin(DM)}, {}, "inputs"),
        ({"data": fin(DS, multiple=True)}, {}, "inputs"),
        ({"score": fin(PERF)}, {}, "inputs[score].kind"),
        ({"nothing": fin(res.ASSET_UNKNOWN)}, {}, "inputs[nothing].kind"),
        ({LONG: fin(M)}, {}, f"inputs[{LONG}]"),
        ({}, {"opener": fout(DM)}, "outputs[opener].kind"),
        ({}, {"data": fout(DS)}, "outputs[data].kind"),
        ({}, {"performance": fout(PERF, multiple=True)}, "outputs[performance]"),
        ({}, {LONG: fout(M)}, f"outputs[{LONG}]"),
    ],
)
def test_function_io_rules(ledger, inputs, outputs, field):
    request = function_request(inputs=inputs, outputs=outputs)
    error = call_error(ledger.org1.RegisterFunction, request)
    assert error.code == INVALID
    assert field in fields(error)
    assert call_error(ledger.org1.GetFunction, api.GetFunctionRequest(key=request.key)).code == NOT_FOUND


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"key": "nope"}, "key"),
        ({"name": ""}, "name"),
        ({"archive": res.Addressable()}, "archive"),
        ({"description": res.Addressable(checksum=checksum(), storage_address="x")}, "description.storage_address"),
        ({"metadata": {"a__b": "1"}}, "metadata[a__b]"),
        ({"permissions": private("NopeMSP")}, "permissions.authorized_ids[0]"),
    ],
)
def test_function_invalid_fields_are_named(ledger, overrides, field):
    error = call_error(ledger.org1.RegisterFunction, function_request(**overrides))
    assert error.code == INVALID and field in fields(error)


def test_function_valid_io_starts_waiting(ledger):
    io = {
        "opener": fin(DM),
        "datasamples": fin(DS, multiple=True, optional=True),
        "models": fin(M, multiple=True, optional=True),
        "head": fin(M),
    }
    outputs = {"model": fout(M, multiple=True), "performance": fout(PERF)}
    request = function_request(inputs=io, outputs=outputs, permissions=private(ORGS[2]), metadata={"k": "v"})
    function = ledger.org2.RegisterFunction(request).function
    assert function.status == res.FUNCTION_STATUS_WAITING
    assert function.owner == ORGS[1] and function.key == request.key
    assert sorted(function.permissions.process.authorized_ids) == [ORGS[1], ORGS[2]]
    assert function.permissions.download == function.permissions.process
    assert dict(function.inputs) == io and dict(function.outputs) == outputs
    assert not function.HasField("image")
    assert ledger.org1.GetFunction(api.GetFunctionRequest(key=function.key)).function == function
    # A function without any input or output is valid too.
    bare = ledger.org1.RegisterFunction(function_request(inputs={}, outputs={})).function
    assert bare.status == res.FUNCTION_STATUS_WAITING


def test_function_duplicate_and_rename(ledger):
    function = make_function(ledger.org1, io=SOURCE_IO, ready=False)
    error = call_error(ledger.org2.RegisterFunction, function_request(key=function.key))
    assert error.code == EXISTS and error.metadata["keys"] == function.key
    ledger.org1.UpdateFunction(api.UpdateFunctionRequest(key=function.key, name="renamed"))
    assert ledger.org2.GetFunction(api.GetFunctionRequest(key=function.key)).function.name == "renamed"
    error = call_error(ledger.org2.UpdateFunction, api.UpdateFunctionRequest(key=function.key, name="mine"))
    assert error.code == DENIED
    error = call_error(ledger.org1.UpdateFunction, api.UpdateFunctionRequest(key=new_key(), name="x"))
    assert error.code == NOT_FOUND
    assert call_error(ledger.org1.GetFunction, api.GetFunctionRequest(key=new_key())).code == NOT_FOUND


# ============================================================================================ compute plans
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"key": "plan-1"}, "key"),
        ({"key": ""}, "key"),
        ({"name": ""}, "name"),
        ({"name": LONG}, "name"),
        ({"tag": LONG}, "tag"),
        ({"metadata": {"a__b": "v"}}, "metadata[a__b]"),
        ({"metadata": {"k": LONG}}, "metadata[k]"),
        ({"creator": "u" * 151}, "creator"),
    ],
)
def test_plan_invalid_fields_are_named(ledger, overrides, field):
    values = {"key": new_key(), "name": "plan", **overrides}
    error = call_error(ledger.org1.RegisterComputePlan, api.RegisterComputePlanRequest(**values))
    assert error.code == INVALID and field in fields(error)


def test_plan_registration_duplicates_and_rename(ledger):
    request = api.RegisterComputePlanRequest(key=new_key(), name="plan", tag="t", metadata={"k": "v"}, creator="alice")
    plan = ledger.org1.RegisterComputePlan(request).compute_plan
    assert (plan.owner, plan.tag, plan.creator, dict(plan.metadata)) == (ORGS[0], "t", "alice", {"k": "v"})
    assert plan.status == res.PLAN_STATUS_CREATED and plan.task_count == 0
    assert not plan.HasField("start_date") and not plan.HasField("end_date")

    again = api.RegisterComputePlanRequest(key=request.key, name="other")
    error = call_error(ledger.org2.RegisterComputePlan, again)
    assert error.code == EXISTS and error.metadata["keys"] == plan.key

    ledger.org1.UpdateComputePlan(api.UpdateComputePlanRequest(key=plan.key, name="renamed"))
    assert get_plan(ledger.org3, plan.key).name == "renamed"
    error = call_error(ledger.org2.UpdateComputePlan, api.UpdateComputePlanRequest(key=plan.key, name="mine"))
    assert error.code == DENIED
    error = call_error(ledger.org1.UpdateComputePlan, api.UpdateComputePlanRequest(key=plan.key, name=""))
    assert error.code == INVALID and fields(error) == ["name"]
    error = call_error(ledger.org1.UpdateComputePlan, api.UpdateComputePlanRequest(key=new_key(), name="x"))
    assert error.code == NOT_FOUND
    assert get_plan(ledger.org1, plan.key).name == "renamed"
    assert call_error(ledger.org1.GetComputePlan, api.GetComputePlanRequest(key=new_key())).code == NOT_FOUND


# ============================================================================================== task batches
@dataclass
class World:
    """Assets shared by the task tests (each test uses its own plans)."""

    dm1: res.DataManager  # org1, public
    samples1: list[res.DataSample]
    dm2: res.DataManager  # org2, processable by org1, logs private to org2
    samples2: list[res.DataSample]
    dm3: res.DataManager  # org3, private to org3
    samples3: list[res.DataSample]
    train: res.Function
    aggregate: res.Function
    test: res.Function
    source: res.Function  # no input, one model output
    multi: res.Function  # no input, one multiple model output
    foreign: res.Function  # org2's, private to org2


@pytest.fixture(scope="module")
def world(ledger) -> World:
    dm1 = make_data_manager(ledger.org1)
    dm2 = make_data_manager(ledger.org2, permissions=private(ORGS[0]), logs=private())
    dm3 = make_data_manager(ledger.org3, permissions=private())
    return World(
        dm1=dm1,
        samples1=make_samples(ledger.org1, dm1.key),
        dm2=dm2,
        samples2=make_samples(ledger.org2, dm2.key),
        dm3=dm3,
        samples3=make_samples(ledger.org3, dm3.key),
        train=make_function(ledger.org1),
        aggregate=make_function(ledger.org1, io=AGGREGATE_IO),
        test=make_function(ledger.org1, io=TEST_IO),
        source=make_function(ledger.org1, io=SOURCE_IO),
        multi=make_function(ledger.org1, io=MULTI_OUT_IO),
        foreign=make_function(ledger.org2, io=SOURCE_IO, permissions=private()),
    )


def train_spec(w: World, plan_key: str, **kwargs) -> api.NewComputeTask:
    return task_spec(plan_key, w.train, data_inputs(w.dm1.key, w.samples1), **kwargs)


def scoring_spec(w: World, plan_key: str, parent_key: str, **kwargs) -> api.NewComputeTask:
    inputs = [*data_inputs(w.dm1.key, w.samples1), parent_input("models", parent_key)]
    return task_spec(plan_key, w.test, inputs, **kwargs)


def aggregate_spec(w: World, plan_key: str, *parent_keys: str, worker: str = ORGS[0], **kwargs):
    inputs = [parent_input("models", key) for key in parent_keys]
    return task_spec(plan_key, w.aggregate, inputs, worker=worker, **kwargs)


def _undeclared_identifier(w, p):
    t = train_spec(w, p)
    t.inputs.append(api.NewComputeTaskInput(identifier="nope", asset_key=w.dm1.key))
    return [t], "tasks[0].inputs[3].identifier"


def _repeated_single_model(w, p):
    parent = train_spec(w, p)
    t = scoring_spec(w, p, parent.key)
    t.inputs.append(parent_input("models", parent.key))
    return [parent, t], "tasks[1].inputs"


def _repeated_data_manager(w, p):
    t = train_spec(w, p)
    t.inputs.append(api.NewComputeTaskInput(identifier="opener", asset_key=w.dm1.key))
    return [t], "tasks[0].inputs"


def _missing_required_input(w, p):
    return [task_spec(p, w.test, data_inputs(w.dm1.key, w.samples1))], "tasks[0].inputs"


def _both_refs(w, p):
    parent = train_spec(w, p)
    both = parent_input("models", parent.key)
    both.asset_key = new_key()
    return [parent, task_spec(p, w.aggregate, [both], worker=ORGS[0])], "tasks[1].inputs[0]"


def _no_ref(w, p):
    return [task_spec(p, w.aggregate, [api.NewComputeTaskInput(identifier="models")], worker=ORGS[0])], (
        "tasks[0].inputs[0]"
    )


def _manager_by_parent(w, p):
    parent = train_spec(w, p)
    t = train_spec(w, p)
    t.inputs[0].CopyFrom(parent_input("opener", parent.key))
    return [parent, t], "tasks[1].inputs[0]"


def _sample_by_parent(w, p):
    parent = train_spec(w, p)
    t = train_spec(w, p)
    t.inputs[2].CopyFrom(parent_input("datasamples", parent.key))
    return [parent, t], "tasks[1].inputs[2]"


def _sample_not_linked(w, p):
    inputs = data_inputs(w.dm1.key, [w.samples1[0], w.samples2[0]])
    return [task_spec(p, w.train, inputs)], "tasks[0].inputs[2].asset_key"


def _kind_mismatch(w, p):
    parent = train_spec(w, p)
    scorer = scoring_spec(w, p, parent.key)
    child = task_spec(p, w.aggregate, [parent_input("models", scorer.key, "performance")], worker=ORGS[0])
    return [parent, scorer, child], "tasks[2].inputs[0]"


def _multiple_into_single(w, p):
    parent = task_spec(p, w.multi, [], worker=ORGS[0])
    return [parent, scoring_spec(w, p, parent.key)], "tasks[1].inputs[3]"


def _missing_output(w, p):
    t = train_spec(w, p)
    del t.outputs["model"]
    return [t], "tasks[0].outputs"


def _extra_output(w, p):
    t = train_spec(w, p)
    t.outputs["extra"].CopyFrom(api.NewComputeTaskOutput(permissions=public()))
    return [t], "tasks[0].outputs[extra]"


def _private_performance(w, p):
    parent = train_spec(w, p)
    perf = api.NewComputeTaskOutput(permissions=private(*ORGS))
    return [
        parent,
        scoring_spec(w, p, parent.key, performance=perf),
    ], "tasks[1].outputs[performance].permissions.public"


def _transient_performance(w, p):
    parent = train_spec(w, p)
    perf = api.NewComputeTaskOutput(permissions=public(), transient=True)
    return [parent, scoring_spec(w, p, parent.key, performance=perf)], "tasks[1].outputs[performance].transient"


def _unknown_org_in_output(w, p):
    out = api.NewComputeTaskOutput(permissions=private(ORGS[1], "NopeMSP"))
    return [train_spec(w, p, model=out)], "tasks[0].outputs[model].permissions.authorized_ids[1]"


def _worker_not_manager_owner(w, p):
    return [train_spec(w, p, worker=ORGS[1])], "tasks[0].worker"


def _no_worker_without_manager(w, p):
    parent = train_spec(w, p)
    return [parent, aggregate_spec(w, p, parent.key, worker="")], "tasks[1].worker"


def _unknown_worker(w, p):
    parent = train_spec(w, p)
    return [parent, aggregate_spec(w, p, parent.key, worker="NopeMSP")], "tasks[1].worker"


def _unknown_worker_of_private_output(w, p):
    # The unknown worker is the mistake to report, not its lack of permission on the parent's output.
    parent = train_spec(w, p, model=api.NewComputeTaskOutput(permissions=private()))
    return [parent, aggregate_spec(w, p, parent.key, worker="NopeMSP")], "tasks[1].worker"


def _invalid_key(w, p):
    t = train_spec(w, p)
    t.key = "task-1"
    return [t], "tasks[0].key"


def _duplicate_key(w, p):
    a, b = train_spec(w, p), train_spec(w, p)
    b.key = a.key
    return [a, b], "tasks[1].key"


def _long_tag(w, p):
    t = train_spec(w, p)
    t.tag = LONG
    return [t], "tasks[0].tag"


def _reserved_metadata(w, p):
    t = train_spec(w, p)
    t.metadata["__tag__"] = "x"
    return [t], "tasks[0].metadata[__tag__]"


def _long_metadata(w, p):
    t = train_spec(w, p)
    t.metadata["k"] = LONG
    return [t], "tasks[0].metadata[k]"


def _malformed_asset_key(w, p):
    t = train_spec(w, p)
    t.inputs[0].asset_key = "not-a-uuid"
    return [t], "tasks[0].inputs[0].asset_key"


def _malformed_parent_key(w, p):
    return [task_spec(p, w.aggregate, [parent_input("models", "not-a-uuid")], worker=ORGS[0])], (
        "tasks[0].inputs[0].parent_task_key"
    )


def _malformed_plan_key(w, p):
    return [train_spec(w, "not-a-uuid")], "tasks[0].compute_plan_key"


def _several_plans(w, p):
    return [train_spec(w, p), train_spec(w, new_key())], "tasks"


def _empty_batch(w, p):
    return [], "tasks"


INVALID_BATCHES = {
    "undeclared identifier": _undeclared_identifier,
    "repeated single model input": _repeated_single_model,
    "repeated data manager input": _repeated_data_manager,
    "missing required input": _missing_required_input,
    "asset_key and parent ref": _both_refs,
    "neither asset_key nor parent ref": _no_ref,
    "data manager by parent ref": _manager_by_parent,
    "data sample by parent ref": _sample_by_parent,
    "sample not linked to the data manager": _sample_not_linked,
    "parent output kind mismatch": _kind_mismatch,
    "multiple output into single input": _multiple_into_single,
    "missing output": _missing_output,
    "extra output": _extra_output,
    "private performance output": _private_performance,
    "transient performance output": _transient_performance,
    "unknown organization in output permissions": _unknown_org_in_output,
    "worker other than the data manager owner": _worker_not_manager_owner,
    "no worker and no data manager": _no_worker_without_manager,
    "unknown worker": _unknown_worker,
    "unknown worker of a private parent output": _unknown_worker_of_private_output,
    "task key not a UUID": _invalid_key,
    "duplicate key in the batch": _duplicate_key,
    "tag too long": _long_tag,
    "reserved metadata key": _reserved_metadata,
    "metadata value too long": _long_metadata,
    "asset key not a UUID": _malformed_asset_key,
    "parent key not a UUID": _malformed_parent_key,
    "plan key not a UUID": _malformed_plan_key,
    "tasks of several plans": _several_plans,
    "empty batch": _empty_batch,
}


@pytest.mark.parametrize("case", list(INVALID_BATCHES))
def test_invalid_task_batches_name_the_field(ledger, world, case):
    plan = make_plan(ledger.org1)
    specs, field = INVALID_BATCHES[case](world, plan.key)
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=specs))
    assert error.code == INVALID, error.message
    assert field in fields(error), (field, error.violations)
    assert task_count(ledger.org1, plan.key) == 0
    assert get_plan(ledger.org1, plan.key).task_count == 0


def test_parent_output_that_does_not_exist(ledger, world):
    plan = make_plan(ledger.org1)
    parent = train_spec(world, plan.key)
    child = aggregate_spec(world, plan.key)
    child.inputs.append(parent_input("models", parent.key, output="nope"))
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[parent, child]))
    assert error.code == INVALID
    assert fields(error) == ["tasks[1].inputs[0].parent_task_output_identifier"]
    # Same with a parent registered earlier.
    register(ledger.org1, parent)
    child.key = new_key()
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[child]))
    assert error.code == INVALID
    assert fields(error) == ["tasks[0].inputs[0].parent_task_output_identifier"]
    assert task_count(ledger.org1, plan.key) == 1


def test_every_violation_of_a_batch_is_reported(ledger, world):
    plan = make_plan(ledger.org1)
    a = train_spec(world, plan.key, worker=ORGS[2])
    b = train_spec(world, plan.key)
    b.tag = LONG
    del b.outputs["model"]
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[a, b]))
    assert error.code == INVALID
    assert {"tasks[0].worker", "tasks[1].tag", "tasks[1].outputs"} <= set(fields(error))


def test_cycles_are_invalid(ledger, world):
    plan = make_plan(ledger.org1)
    a = aggregate_spec(world, plan.key)
    b = aggregate_spec(world, plan.key)
    a.inputs.append(parent_input("models", b.key))
    b.inputs.append(parent_input("models", a.key))
    root = train_spec(world, plan.key)
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[root, a, b]))
    assert error.code == INVALID and error.reason == "CYCLE"
    assert sorted(error.metadata["keys"].split(",")) == sorted([a.key, b.key])
    # A task that is its own parent is a cycle too.
    own = aggregate_spec(world, plan.key)
    own.inputs.append(parent_input("models", own.key))
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[own]))
    assert error.code == INVALID and error.reason == "CYCLE"
    assert task_count(ledger.org1, plan.key) == 0


def test_unknown_references_are_not_found(ledger, world):
    plan = make_plan(ledger.org1)
    unknown = new_key()
    cases = {
        "plan": [train_spec(world, unknown)],
        "function": [task_spec(plan.key, res.Function(key=unknown), [], worker=ORGS[0])],
        "parent": [aggregate_spec(world, plan.key, unknown)],
        "data manager": [task_spec(plan.key, world.train, data_inputs(unknown, world.samples1))],
        "data sample": [
            task_spec(plan.key, world.train, data_inputs(world.dm1.key, [*world.samples1, res.DataSample(key=unknown)]))
        ],
        "model": [
            task_spec(
                plan.key,
                world.aggregate,
                [api.NewComputeTaskInput(identifier="models", asset_key=unknown)],
                worker=ORGS[0],
            )
        ],
    }
    for name, specs in cases.items():
        # A valid task rides along: it is refused with the batch.
        batch = [train_spec(world, plan.key), *specs] if name != "plan" else specs
        error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=batch))
        assert error.code == NOT_FOUND, (name, error.code, error.message)
        if name != "plan":
            assert error.metadata["keys"] == unknown, name
    assert task_count(ledger.org1, plan.key) == 0


def test_only_the_plan_owner_registers_tasks(ledger, world):
    plan = make_plan(ledger.org1)
    spec = task_spec(plan.key, world.source, [], worker=ORGS[1])
    assert call_error(ledger.org2.RegisterTasks, api.RegisterTasksRequest(tasks=[spec])).code == DENIED
    assert task_count(ledger.org1, plan.key) == 0
    assert register(ledger.org1, spec)[0].owner == ORGS[0]


def test_task_owner_must_process_function_and_data_manager(ledger, world):
    plan = make_plan(ledger.org1)
    foreign_function = task_spec(plan.key, world.foreign, [], worker=ORGS[0])
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[foreign_function]))
    assert error.code == DENIED
    foreign_data = task_spec(plan.key, world.train, data_inputs(world.dm3.key, world.samples3))
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[foreign_data]))
    assert error.code == DENIED
    assert task_count(ledger.org1, plan.key) == 0
    # org1 may process dm2 (owned by org2): the task runs on org2.
    allowed = task_spec(plan.key, world.train, data_inputs(world.dm2.key, world.samples2))
    assert register(ledger.org1, allowed)[0].worker == ORGS[1]


def test_worker_must_process_parent_outputs(ledger, world):
    plan = make_plan(ledger.org1)
    mine = api.NewComputeTaskOutput(permissions=private())  # org1 only
    parent = train_spec(world, plan.key, model=mine)
    child = aggregate_spec(world, plan.key, parent.key, worker=ORGS[2])
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[parent, child]))
    assert error.code == DENIED
    assert task_count(ledger.org1, plan.key) == 0
    # Same with the parent already registered; a worker it is shared with is accepted.
    register(ledger.org1, parent)
    child.key = new_key()
    assert call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[child])).code == DENIED
    ok = aggregate_spec(world, plan.key, parent.key, worker=ORGS[0])
    assert register(ledger.org1, ok)[0].worker == ORGS[0]


def test_worker_must_process_models_given_by_key(ledger, world):
    plan = make_plan(ledger.org1)
    (producer,) = register(
        ledger.org1, train_spec(world, plan.key, model=api.NewComputeTaskOutput(permissions=private()))
    )
    model_key = run_task(ledger.org1, producer.key)
    by_key = [api.NewComputeTaskInput(identifier="models", asset_key=model_key)]
    refused = task_spec(plan.key, world.aggregate, by_key, worker=ORGS[2])
    assert call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[refused])).code == DENIED
    (accepted,) = register(ledger.org1, task_spec(plan.key, world.aggregate, by_key, worker=ORGS[0]))
    assert accepted.inputs[0].asset_key == model_key
    assert accepted.rank == 0  # a model by key is not a parent
    assert accepted.status == res.STATUS_WAITING_FOR_EXECUTOR_SLOT


def test_existing_keys_refuse_the_whole_batch(ledger, world):
    plan = make_plan(ledger.org1)
    a, b = train_spec(world, plan.key), train_spec(world, plan.key)
    register(ledger.org1, a, b)
    before = (event_count(ledger.org1), get_plan(ledger.org1, plan.key))
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[b, a]))
    assert error.code == EXISTS
    assert error.metadata["keys"] == ",".join(sorted([a.key, b.key]))
    fresh = train_spec(world, plan.key)
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[fresh, a]))
    assert error.code == EXISTS and error.metadata["keys"] == a.key
    assert call_error(ledger.org1.GetTask, api.GetTaskRequest(key=fresh.key)).code == NOT_FOUND
    assert task_count(ledger.org1, plan.key) == 2
    assert (event_count(ledger.org1), get_plan(ledger.org1, plan.key)) == before


def test_one_bad_task_registers_nothing(ledger, world):
    plan = make_plan(ledger.org1)
    good = [train_spec(world, plan.key) for _ in range(3)]
    bad = aggregate_spec(world, plan.key, good[0].key, worker="NopeMSP")
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[*good, bad]))
    assert error.code == INVALID and fields(error) == ["tasks[3].worker"]
    # A NOT_FOUND found late (the last task's sample) refuses the earlier tasks too.
    late = task_spec(plan.key, world.train, data_inputs(world.dm1.key, [res.DataSample(key=new_key())]))
    assert call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[*good, late])).code == NOT_FOUND
    assert task_count(ledger.org1, plan.key) == 0
    plan_now = get_plan(ledger.org1, plan.key)
    assert plan_now.task_count == 0 and plan_now.status == res.PLAN_STATUS_CREATED
    for spec in good:
        assert call_error(ledger.org1.GetTask, api.GetTaskRequest(key=spec.key)).code == NOT_FOUND


def test_rank_and_worker_are_computed(ledger, world):
    plan = make_plan(ledger.org1)
    t1 = train_spec(world, plan.key)
    t2 = task_spec(plan.key, world.train, data_inputs(world.dm2.key, world.samples2))
    t2.rank = 7  # the SDK sends a rank: it is ignored
    agg = aggregate_spec(world, plan.key, t1.key, t2.key, worker=ORGS[2])
    t3 = train_spec(world, plan.key, worker=ORGS[0])  # explicit worker equal to the data manager owner
    t3.inputs.append(parent_input("models", agg.key))
    deep = aggregate_spec(world, plan.key, t3.key, t1.key, worker=ORGS[1])
    created = {t.key: t for t in register(ledger.org1, deep, t3, agg, t2, t1)}
    assert [created[s.key].rank for s in (t1, t2, agg, t3, deep)] == [0, 0, 1, 2, 3]
    assert [created[s.key].worker for s in (t1, t2, agg, t3, deep)] == [ORGS[0], ORGS[1], ORGS[2], ORGS[0], ORGS[1]]
    assert all(t.owner == ORGS[0] and t.compute_plan_key == plan.key for t in created.values())
    # A later batch ranks from the registered parents.
    (later,) = register(ledger.org1, aggregate_spec(world, plan.key, deep.key, agg.key))
    assert later.rank == 4
    read = get_task(ledger.org2, deep.key)
    assert read.rank == 3 and read.function.key == world.aggregate.key
    assert [i.parent_task_output.parent_task_key for i in read.inputs] == [t3.key, t1.key]


def test_initial_statuses_follow_the_function(ledger, world):
    waiting = make_function(ledger.org1, io=SOURCE_IO, ready=False)
    building = make_function(ledger.org1, io=SOURCE_IO, ready=False)
    ledger.org1.ApplyFunctionAction(
        api.ApplyFunctionActionRequest(function_key=building.key, action=res.FUNCTION_ACTION_BUILDING)
    )
    plan = make_plan(ledger.org1)
    # Only tasks waiting for their build: the plan stays CREATED.
    (w,) = register(ledger.org1, task_spec(plan.key, waiting, [], worker=ORGS[0]))
    assert w.status == res.STATUS_WAITING_FOR_BUILDER_SLOT
    assert get_plan(ledger.org1, plan.key).status == res.PLAN_STATUS_CREATED

    b = task_spec(plan.key, building, [], worker=ORGS[1])
    root = train_spec(world, plan.key)
    child = aggregate_spec(world, plan.key, root.key)
    waiting_child = task_spec(plan.key, world.aggregate, [parent_input("models", w.key)], worker=ORGS[0])
    created = {t.key: t.status for t in register(ledger.org1, b, root, child, waiting_child)}
    assert created == {
        b.key: res.STATUS_BUILDING,
        root.key: res.STATUS_WAITING_FOR_EXECUTOR_SLOT,
        child.key: res.STATUS_WAITING_FOR_PARENT_TASKS,
        waiting_child.key: res.STATUS_WAITING_FOR_PARENT_TASKS,
    }
    run_task(ledger.org1, root.key)
    (after_done,) = register(ledger.org1, aggregate_spec(world, plan.key, root.key))
    assert after_done.status == res.STATUS_WAITING_FOR_EXECUTOR_SLOT

    counted = get_plan(ledger.org1, plan.key)
    assert counted.status == res.PLAN_STATUS_DOING and counted.HasField("start_date")
    assert (
        counted.task_count,
        counted.waiting_builder_slot_count,
        counted.building_count,
        counted.waiting_parent_tasks_count,
        counted.waiting_executor_slot_count,
        counted.done_count,
    ) == (6, 1, 1, 1, 2, 1)


def test_tasks_of_a_canceled_or_failed_function_are_born_so(ledger, world):
    canceled = make_function(ledger.org1, io=SOURCE_IO, ready=False)
    ledger.org1.ApplyFunctionAction(
        api.ApplyFunctionActionRequest(function_key=canceled.key, action=res.FUNCTION_ACTION_CANCELED)
    )
    plan = make_plan(ledger.org1)
    parent = task_spec(plan.key, canceled, [], worker=ORGS[0])
    child = aggregate_spec(world, plan.key, parent.key)
    created = {t.key: t.status for t in register(ledger.org1, parent, child)}
    assert created == {parent.key: res.STATUS_CANCELED, child.key: res.STATUS_CANCELED}
    counted = get_plan(ledger.org1, plan.key)
    assert counted.status == res.PLAN_STATUS_CANCELED and counted.canceled_count == 2

    failed = make_function(ledger.org1, io=SOURCE_IO, ready=False)
    ledger.org1.ApplyFunctionAction(
        api.ApplyFunctionActionRequest(function_key=failed.key, action=res.FUNCTION_ACTION_BUILDING)
    )
    ledger.org1.RegisterFailureReport(
        api.RegisterFailureReportRequest(
            asset_key=failed.key, asset_type=res.FAILED_ASSET_FUNCTION, error_type=res.BUILD_ERROR
        )
    )
    plan = make_plan(ledger.org1)
    parent = task_spec(plan.key, failed, [], worker=ORGS[0])
    child = aggregate_spec(world, plan.key, parent.key)
    by_key = {t.key: t for t in register(ledger.org1, child, parent)}
    assert by_key[parent.key].status == res.STATUS_FAILED and by_key[parent.key].error_type == res.BUILD_ERROR
    assert by_key[child.key].status == res.STATUS_CANCELED
    failed_plan = get_plan(ledger.org1, plan.key)
    assert failed_plan.status == res.PLAN_STATUS_FAILED and failed_plan.HasField("failure_date")
    assert failed_plan.failed_task_key == parent.key
    # A failed plan takes no more tasks.
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[train_spec(world, plan.key)]))
    assert error.code == PRECONDITION and error.reason == "PLAN_TERMINATED"


def test_children_of_a_canceled_parent_are_born_canceled(ledger, world):
    plan = make_plan(ledger.org1)
    (parent,) = register(ledger.org1, train_spec(world, plan.key))
    act(ledger.org1, parent.key, res.TASK_ACTION_CANCELED)
    (child,) = register(ledger.org1, aggregate_spec(world, plan.key, parent.key))
    assert child.status == res.STATUS_CANCELED and child.rank == 1
    assert get_plan(ledger.org1, plan.key).canceled_count == 2


def test_no_tasks_into_a_canceled_plan(ledger, world):
    plan = make_plan(ledger.org1)
    ledger.org1.CancelComputePlan(api.CancelComputePlanRequest(key=plan.key))
    error = call_error(ledger.org1.RegisterTasks, api.RegisterTasksRequest(tasks=[train_spec(world, plan.key)]))
    assert error.code == PRECONDITION and error.reason == "PLAN_TERMINATED"
    assert task_count(ledger.org1, plan.key) == 0


def test_logs_permission_comes_from_the_data_manager_or_the_parents(ledger, world):
    plan = make_plan(ledger.org1)
    t1 = train_spec(world, plan.key)  # dm1: logs public
    t2 = task_spec(plan.key, world.train, data_inputs(world.dm2.key, world.samples2))  # dm2: logs private to org2
    agg_private = aggregate_spec(world, plan.key, t2.key, worker=ORGS[2])
    agg_public = aggregate_spec(world, plan.key, t1.key, t2.key, worker=ORGS[2])
    lone = task_spec(plan.key, world.source, [], worker=ORGS[2])
    by_key = {t.key: t for t in register(ledger.org1, t1, t2, agg_private, agg_public, lone)}
    assert by_key[t1.key].logs_permission == world.dm1.logs_permission
    assert by_key[t2.key].logs_permission == res.Permission(public=False, authorized_ids=[ORGS[1]])
    # Without a data manager: private to the task owner, unioned with every parent's.
    assert by_key[agg_private.key].logs_permission == res.Permission(public=False, authorized_ids=[ORGS[0], ORGS[1]])
    assert by_key[agg_public.key].logs_permission.public
    assert by_key[lone.key].logs_permission == res.Permission(public=False, authorized_ids=[ORGS[0]])


def test_outputs_tag_and_metadata_round_trip(ledger, world):
    plan = make_plan(ledger.org1)
    spec = train_spec(world, plan.key, model=api.NewComputeTaskOutput(permissions=private(ORGS[2]), transient=True))
    spec.tag = "round-3"
    spec.metadata.update({"round_idx": "3", "kind": "train"})
    (created,) = register(ledger.org1, spec)
    read = get_task(ledger.org2, spec.key)
    for task in (created, read):
        assert task.tag == "round-3" and dict(task.metadata) == {"round_idx": "3", "kind": "train"}
        output = task.outputs["model"]
        assert output.transient and sorted(output.permissions.process.authorized_ids) == [ORGS[0], ORGS[2]]
        assert output.permissions.download == output.permissions.process
        assert [i.identifier for i in task.inputs] == ["opener", "datasamples", "datasamples"]
        assert task.inputs[0].asset_key == world.dm1.key
        assert task.function.key == world.train.key and task.function.status == res.FUNCTION_STATUS_READY
        assert task.HasField("creation_date") and not task.HasField("start_date")
    assert created == read


def test_a_batch_of_500_tasks_keeps_request_order(ledger, world):
    plan = make_plan(ledger.org1)
    root = train_spec(world, plan.key)
    chain = [root]
    for _ in range(499):
        chain.append(aggregate_spec(world, plan.key, chain[-1].key))
    shuffled = chain[:]
    random.Random(7).shuffle(shuffled)
    created = register(ledger.org1, *shuffled)
    assert [t.key for t in created] == [s.key for s in shuffled]
    rank = {t.key: t.rank for t in created}
    assert [rank[s.key] for s in chain] == list(range(500))
    assert task_count(ledger.org1, plan.key) == 500
    counted = get_plan(ledger.org1, plan.key)
    assert (counted.task_count, counted.waiting_executor_slot_count, counted.waiting_parent_tasks_count) == (
        500,
        1,
        499,
    )


# ======================================================================================== channel isolation
@pytest.fixture(scope="module")
def solo(ledger):
    """MyOrg3MSP acting in channel "solo", where it is the only member."""
    stub = api_grpc.AssetServiceStub(
        sync_channel(ledger.server.addr, OrgCredentials(ORGS[2], SECRETS[ORGS[2]], channel="solo"))
    )
    try:
        stub.RegisterOrganization(api.RegisterOrganizationRequest(address="http://solo.test"))
    except grpc.RpcError as error:
        assert error.code() == EXISTS
    return stub


def test_channels_are_isolated(ledger, world, solo):
    plan = make_plan(ledger.org1)
    (task,) = register(ledger.org1, train_spec(world, plan.key))
    gets = [
        (solo.GetDataManager, api.GetDataManagerRequest(key=world.dm3.key)),
        (solo.GetDataSample, api.GetDataSampleRequest(key=world.samples3[0].key)),
        (solo.GetFunction, api.GetFunctionRequest(key=world.train.key)),
        (solo.GetComputePlan, api.GetComputePlanRequest(key=plan.key)),
        (solo.GetTask, api.GetTaskRequest(key=task.key)),
    ]
    for call, request in gets:
        assert call_error(call, request).code == NOT_FOUND
    assert solo.ListDataManagers(api.ListDataManagersRequest(key=[world.dm3.key])).total_size == 0
    assert solo.ListTasks(api.ListTasksRequest(compute_plan_key=[plan.key])).total_size == 0
    assert solo.ListFunctions(api.ListFunctionsRequest(owner=[ORGS[0]])).total_size == 0
    assert [o.id for o in solo.ListOrganizations(api.ListOrganizationsRequest()).organizations] == [ORGS[2]]
    # Writes in solo cannot reach mychannel's assets either.
    error = call_error(solo.UpdateDataManager, api.UpdateDataManagerRequest(key=world.dm3.key, name="x"))
    assert error.code == NOT_FOUND
    error = call_error(
        solo.RegisterDataSamples, api.RegisterDataSamplesRequest(data_samples=[new_sample(world.dm3.key)])
    )
    assert error.code == NOT_FOUND
    # mychannel's organizations are unknown in solo.
    error = call_error(solo.RegisterDataManager, dm_request(permissions=private(ORGS[0])))
    assert error.code == INVALID and fields(error) == ["permissions.authorized_ids[0]"]


def test_same_keys_live_apart_in_each_channel(ledger, world, solo):
    request = dm_request(key=world.dm3.key, name="solo-dataset")
    created = solo.RegisterDataManager(request).data_manager
    assert created.key == world.dm3.key and created.owner == ORGS[2]
    assert ledger.org3.GetDataManager(api.GetDataManagerRequest(key=world.dm3.key)).data_manager.name == "dataset"
    assert solo.GetDataManager(api.GetDataManagerRequest(key=world.dm3.key)).data_manager.name == "solo-dataset"
    plan = solo.RegisterComputePlan(api.RegisterComputePlanRequest(key=new_key(), name="solo")).compute_plan
    # A task in solo cannot use mychannel's function.
    spec = task_spec(plan.key, world.source, [], worker=ORGS[2])
    assert call_error(solo.RegisterTasks, api.RegisterTasksRequest(tasks=[spec])).code == NOT_FOUND
    assert call_error(ledger.org1.GetComputePlan, api.GetComputePlanRequest(key=plan.key)).code == NOT_FOUND


def test_an_organization_acts_only_in_its_channels(ledger):
    stub = api_grpc.AssetServiceStub(
        sync_channel(ledger.server.addr, OrgCredentials(ORGS[0], SECRETS[ORGS[0]], channel="solo"))
    )
    error = call_error(stub.ListDataManagers, api.ListDataManagersRequest())
    assert error.code == DENIED and error.reason == "NOT_CHANNEL_MEMBER"
