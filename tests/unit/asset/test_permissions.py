"""Permissions (domain §1.2, §1.9, §1.10, §1.15, §3.3): what the creator of a task chooses for each
output, what the models and logs inherit, who may consume what, and storage's checks."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import datasets, outputs, tasks
from services.asset.domain.common import make_permissions, union
from services.kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from tests.unit.asset.conftest import ORG1, ORG2, ORG3, TEST_IO, TRAIN_IO, from_parent, private, public


def can_process(ledger, kind: int, key: str, org: str, download: bool = False) -> bool:
    return ledger.read(ORG1, lambda ctx: outputs.can_process(ctx, kind, key, org, download=download)).allowed


def can_access_logs(ledger, key: str, org: str) -> bool:
    return ledger.read(ORG1, lambda ctx: outputs.can_access_logs(ctx, key, org))


def test_the_owner_is_always_authorized_and_download_is_process():
    permissions = make_permissions(private(ORG3, ORG2, ORG3), ORG1)
    assert list(permissions.process.authorized_ids) == [ORG1, ORG2, ORG3]
    assert permissions.download == permissions.process
    assert list(make_permissions(public(), ORG1).process.authorized_ids) == [ORG1]


def test_union_is_public_if_either_side_is():
    assert union(res.Permission(authorized_ids=[ORG1]), res.Permission(authorized_ids=[ORG2])) == res.Permission(
        public=False, authorized_ids=[ORG1, ORG2]
    )
    assert union(res.Permission(public=True), res.Permission(authorized_ids=[ORG2])).public


def test_authorized_ids_must_be_organizations_of_the_channel(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    task = ledger.new_task(plan, function, model=tasks.NewTaskOutput(permissions=private("StrangerMSP")))
    with pytest.raises(InvalidArgument) as refused:
        ledger.register(ORG1, task)
    assert refused.value.violations[0].field == "tasks[0].outputs[model].permissions.authorized_ids[0]"
    # Substra's words, which clients match on, besides the field and the organization.
    assert "invalid permission input values" in refused.value.message
    assert "permissions.authorized_ids[0]" in refused.value.message and "StrangerMSP" in refused.value.message


def test_a_data_manager_naming_an_unknown_organization_is_refused_in_substra_s_words(ledger):
    new = datasets.NewDataManager(
        key=ledger.key(),
        name="dataset",
        description=ledger.address("description"),
        opener=ledger.address("opener"),
        permissions=private(ORG2, "StrangerMSP"),
        logs_permission=public(),
    )
    with pytest.raises(InvalidArgument) as refused:
        ledger.write(ORG1, lambda ctx: datasets.register_data_manager(ctx, new))
    assert refused.value.message.startswith("permissions.authorized_ids[1]: invalid permission input values")


def test_a_model_takes_the_permissions_of_its_output_and_belongs_to_the_worker(ledger):
    plan, function = ledger.compute_plan(ORG1), ledger.function(ORG1)
    task = ledger.add_task(plan, function, worker=ORG2, model=tasks.NewTaskOutput(permissions=private(ORG3)))
    ledger.act(ORG2, task.key, res.TASK_ACTION_EXECUTING)
    model = ledger.produce(task)
    assert model.owner == ORG2
    assert list(model.permissions.process.authorized_ids) == [ORG1, ORG3]  # the task owner is appended
    assert can_process(ledger, res.ASSET_MODEL, model.key, ORG3)
    assert not can_process(ledger, res.ASSET_MODEL, model.key, ORG2)


def test_only_the_worker_of_an_executing_task_registers_its_models(ledger):
    plan, function = ledger.compute_plan(ORG1), ledger.function(ORG1)
    task = ledger.add_task(plan, function, worker=ORG2)
    with pytest.raises(FailedPrecondition) as not_started:
        ledger.produce(task)
    assert not_started.value.reason == "TASK_NOT_EXECUTING"
    ledger.act(ORG2, task.key, res.TASK_ACTION_EXECUTING)
    task.worker = ORG1  # pretend to be the owner
    with pytest.raises(PermissionDenied):
        ledger.produce(task)


@pytest.mark.parametrize(
    ("output", "field"),
    [
        (tasks.NewTaskOutput(permissions=private(ORG2)), "tasks[0].outputs[performance].permissions.public"),
        (tasks.NewTaskOutput(permissions=public(), transient=True), "tasks[0].outputs[performance].transient"),
    ],
)
def test_a_performance_output_is_public_and_not_transient(ledger, output, field):
    manager = ledger.data_manager(ORG1)
    samples = ledger.samples(manager)
    plan, function = ledger.compute_plan(), ledger.function(io=TEST_IO)
    train = ledger.add_task(plan, ledger.function())
    data = [tasks.NewTaskInput("opener", asset_key=manager.key)] + [
        tasks.NewTaskInput("datasamples", asset_key=s.key) for s in samples
    ]
    task = ledger.new_task(plan, function, [*data, from_parent(train.key)], worker="", performance=output)
    with pytest.raises(InvalidArgument) as refused:
        ledger.register(ORG1, task)
    assert field in {v.field for v in refused.value.violations}


def test_the_worker_must_be_allowed_to_process_the_parent_output_it_consumes(ledger):
    plan, function = ledger.compute_plan(ORG1), ledger.function(ORG1)
    parent = ledger.add_task(plan, function, model=tasks.NewTaskOutput(permissions=private(ORG2)))
    allowed = ledger.new_task(plan, function, [from_parent(parent.key)], worker=ORG2)
    refused_task = ledger.new_task(plan, function, [from_parent(parent.key)], worker=ORG3)
    ledger.register(ORG1, allowed)
    with pytest.raises(PermissionDenied):
        ledger.register(ORG1, refused_task)


def test_the_task_owner_must_be_allowed_to_process_function_and_data(ledger):
    plan = ledger.compute_plan(ORG1)
    private_function = ledger.function(ORG2, permissions=private())
    with pytest.raises(PermissionDenied):
        ledger.add_task(plan, private_function)
    manager = ledger.data_manager(ORG2, permissions=private())
    samples = ledger.samples(manager)
    data = [tasks.NewTaskInput("opener", asset_key=manager.key), tasks.NewTaskInput("datasamples", samples[0].key)]
    with pytest.raises(PermissionDenied):
        ledger.add_task(plan, ledger.function(ORG1, io=TRAIN_IO), data, worker="")


def test_logs_of_a_task_without_data_are_its_owners_and_its_parents(ledger):
    plan, function = ledger.compute_plan(ORG1), ledger.function(ORG1)
    manager = ledger.data_manager(ORG2, logs=private(ORG3))
    samples = ledger.samples(manager)
    data = [tasks.NewTaskInput("opener", asset_key=manager.key), tasks.NewTaskInput("datasamples", samples[0].key)]
    trained = ledger.add_task(plan, ledger.function(ORG1, io=TRAIN_IO), data, worker="")
    aggregate = ledger.add_task(plan, function, [from_parent(trained.key)], worker=ORG1)
    assert aggregate.logs_permission == res.Permission(public=False, authorized_ids=[ORG1, ORG2, ORG3])
    assert can_access_logs(ledger, aggregate.key, ORG3)
    assert can_access_logs(ledger, trained.key, ORG3)
    assert not can_access_logs(ledger, trained.key, ORG1)  # the data manager's logs permission, not the owner's


def test_build_error_logs_follow_the_function_process_permission(ledger):
    function = ledger.function(ORG1, permissions=private(ORG2), built=False)
    ledger.function_action(ORG1, function.key, res.FUNCTION_ACTION_BUILDING)
    ledger.write(
        ORG1, lambda ctx: outputs.register_failure_report(ctx, function.key, res.FAILED_ASSET_FUNCTION, res.BUILD_ERROR)
    )
    for org, allowed in ((ORG2, True), (ORG3, False)):
        assert can_access_logs(ledger, function.key, org) is allowed


def test_data_samples_are_processable_by_their_owner_only(ledger):
    manager = ledger.data_manager(ORG1, permissions=public())
    sample = ledger.samples(manager)[0]
    assert can_process(ledger, res.ASSET_DATA_SAMPLE, sample.key, ORG1)
    assert not can_process(ledger, res.ASSET_DATA_SAMPLE, sample.key, ORG2)
    assert can_process(ledger, res.ASSET_DATA_MANAGER, manager.key, ORG2)
