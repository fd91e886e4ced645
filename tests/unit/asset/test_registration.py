"""Registering a batch of tasks (domain §3.2-3.5): ranks, the topological sort and its refusals,
initial statuses, the worker, whole-or-nothing batches."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import outputs, tasks
from services.kit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from tests.unit.asset.conftest import ORG1, ORG2, TRAIN_IO, from_parent, new_key, public


def created_keys(ledger) -> list[str]:
    return [
        e.asset_key
        for e in ledger.events()
        if e.asset_kind == res.ASSET_COMPUTE_TASK and e.event_kind == ev.EVENT_ASSET_CREATED
    ]


def test_rank_is_zero_for_roots_and_one_more_than_the_highest_parent(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    a = ledger.new_task(plan, function)
    b = ledger.new_task(plan, function, [from_parent(a.key)])
    c = ledger.new_task(plan, function, [from_parent(b.key)])
    d = ledger.new_task(plan, function, [from_parent(a.key), from_parent(c.key)])  # a diamond's long side wins
    registered = ledger.register(ORG1, a, b, c, d)
    assert [t.rank for t in registered] == [0, 1, 2, 3]
    later = ledger.add_task(plan, function, [from_parent(b.key)])  # parents from an earlier batch count too
    assert later.rank == 2


def test_a_batch_is_stored_in_topological_order_and_answered_in_request_order(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    root = ledger.new_task(plan, function)
    middle = ledger.new_task(plan, function, [from_parent(root.key)])
    leaf = ledger.new_task(plan, function, [from_parent(middle.key)])
    registered = ledger.register(ORG1, leaf, middle, root)
    assert [t.key for t in registered] == [leaf.key, middle.key, root.key]
    assert created_keys(ledger) == [root.key, middle.key, leaf.key]
    assert [ledger.status(t.key) for t in (root, middle, leaf)] == [
        res.STATUS_WAITING_FOR_EXECUTOR_SLOT,
        res.STATUS_WAITING_FOR_PARENT_TASKS,
        res.STATUS_WAITING_FOR_PARENT_TASKS,
    ]


def test_a_cycle_is_refused_naming_its_tasks_and_nothing_is_registered(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    free = ledger.new_task(plan, function)
    a = ledger.new_task(plan, function)
    b = ledger.new_task(plan, function, [from_parent(a.key)])
    a.inputs.append(from_parent(b.key))
    with pytest.raises(InvalidArgument) as refused:
        ledger.register(ORG1, free, a, b)
    assert refused.value.reason == "CYCLE"
    assert set(refused.value.metadata["keys"].split(",")) == {a.key, b.key}
    assert created_keys(ledger) == []
    assert ledger.plan(plan.key).task_count == 0


def test_a_task_that_is_its_own_parent_is_a_cycle(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    selfish = ledger.new_task(plan, function)
    selfish.inputs.append(from_parent(selfish.key))
    with pytest.raises(InvalidArgument) as refused:
        ledger.register(ORG1, selfish)
    assert refused.value.reason == "CYCLE"


def test_an_unknown_parent_is_not_found(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    missing = new_key()
    with pytest.raises(NotFound) as refused:
        ledger.register(ORG1, ledger.new_task(plan, function, [from_parent(missing)]))
    assert refused.value.metadata["keys"] == missing


def test_one_existing_key_rejects_the_whole_batch(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    first = ledger.new_task(plan, function)
    ledger.register(ORG1, first)
    fresh = ledger.new_task(plan, function)
    with pytest.raises(AlreadyExists) as refused:
        ledger.register(ORG1, fresh, first)
    assert refused.value.metadata["keys"] == first.key
    assert created_keys(ledger) == [first.key]


def test_a_batch_belongs_to_one_plan_with_unique_keys(ledger):
    function = ledger.function()
    one, two = ledger.compute_plan(), ledger.compute_plan()
    with pytest.raises(InvalidArgument):
        ledger.register(ORG1, ledger.new_task(one, function), ledger.new_task(two, function))
    task = ledger.new_task(one, function)
    with pytest.raises(InvalidArgument):
        ledger.register(ORG1, task, task)


def test_only_the_plan_owner_registers_tasks_in_it(ledger):
    plan = ledger.compute_plan(ORG1)
    with pytest.raises(PermissionDenied):
        ledger.register(ORG2, ledger.new_task(plan, ledger.function(ORG2)))


@pytest.mark.parametrize(
    ("actions", "status"),
    [
        ([], res.STATUS_WAITING_FOR_BUILDER_SLOT),
        ([res.FUNCTION_ACTION_BUILDING], res.STATUS_BUILDING),
        ([res.FUNCTION_ACTION_BUILDING, res.FUNCTION_ACTION_READY], res.STATUS_WAITING_FOR_EXECUTOR_SLOT),
        ([res.FUNCTION_ACTION_CANCELED], res.STATUS_CANCELED),
    ],
)
def test_initial_status_follows_the_function_build(ledger, actions, status):
    function = ledger.function(built=False)
    for action in actions:
        ledger.function_action(ORG1, function.key, action)
    assert ledger.add_task(ledger.compute_plan(), function).status == status


def test_a_ready_task_waits_for_an_unfinished_parent_and_not_for_a_done_one(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    parent = ledger.add_task(plan, function)
    assert ledger.add_task(plan, function, [from_parent(parent.key)]).status == res.STATUS_WAITING_FOR_PARENT_TASKS
    ledger.run(parent)
    assert ledger.add_task(plan, function, [from_parent(parent.key)]).status == res.STATUS_WAITING_FOR_EXECUTOR_SLOT


def test_the_worker_of_a_task_with_data_is_the_data_manager_owner(ledger):
    manager = ledger.data_manager(ORG2)
    samples = ledger.samples(manager, 2)
    function = ledger.function(ORG1, io=TRAIN_IO)
    plan = ledger.compute_plan(ORG1)
    data = [tasks.NewTaskInput("opener", asset_key=manager.key)] + [
        tasks.NewTaskInput("datasamples", asset_key=s.key) for s in samples
    ]
    task = ledger.add_task(plan, function, data, worker="")
    assert task.worker == ORG2
    assert task.logs_permission == manager.logs_permission  # a task with data takes its logs permission
    with pytest.raises(InvalidArgument) as refused:
        ledger.add_task(plan, function, data, worker=ORG1)
    assert refused.value.violations[0].field == "tasks[0].worker"


def test_a_task_without_data_needs_a_registered_worker(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    for worker in ("", "NotAnOrgMSP"):
        with pytest.raises(InvalidArgument) as refused:
            ledger.add_task(plan, function, worker=worker)
        assert refused.value.violations[0].field == "tasks[0].worker"


def test_samples_must_be_linked_to_the_data_manager_of_the_task(ledger):
    manager, other = ledger.data_manager(ORG1), ledger.data_manager(ORG1)
    stray = ledger.samples(other)[0]
    plan, function = ledger.compute_plan(), ledger.function(io=TRAIN_IO)
    data = [tasks.NewTaskInput("opener", asset_key=manager.key), tasks.NewTaskInput("datasamples", asset_key=stray.key)]
    with pytest.raises(InvalidArgument) as refused:
        ledger.add_task(plan, function, data, worker="")
    assert refused.value.violations[0].field == "tasks[0].inputs[1].asset_key"


def test_outputs_must_be_exactly_the_functions(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    task = ledger.new_task(plan, function)
    task.outputs["extra"] = tasks.NewTaskOutput()
    del task.outputs["model"]
    with pytest.raises(InvalidArgument) as refused:
        ledger.register(ORG1, task)
    assert {v.field for v in refused.value.violations} == {"tasks[0].outputs", "tasks[0].outputs[extra]"}


def test_a_done_parent_whose_model_was_disabled_cannot_feed_a_new_task(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    parent = ledger.add_task(plan, function, model=tasks.NewTaskOutput(permissions=public(), transient=True))
    child = ledger.add_task(plan, function, [from_parent(parent.key)])
    ledger.run(parent)
    ledger.run(ledger.task(child.key))
    ledger.write(ORG1, lambda ctx: outputs.disable_output(ctx, parent.key, "model"))
    with pytest.raises(FailedPrecondition) as refused:
        ledger.add_task(plan, function, [from_parent(parent.key)])
    assert refused.value.reason == "MODEL_DISABLED"
