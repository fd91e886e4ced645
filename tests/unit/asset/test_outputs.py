"""What tasks produce (domain §1.9, §1.10, §1.12, §2.5): one model per single output, the output-asset
links, disabling transient outputs, and a completion that registers everything with DONE."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import outputs, tasks, work
from services.kit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from tests.unit.asset.conftest import ORG1, ORG2, address, from_parent, new_key, public

TRANSIENT = tasks.NewTaskOutput(permissions=public(), transient=True)


def disable(ledger, org: str, task_key: str):
    return ledger.write(org, lambda ctx: outputs.disable_output(ctx, task_key, "model"))


def test_a_model_comes_with_its_output_asset_link_event_after_it(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    task = ledger.add_task(plan, function)
    ledger.act(ORG1, task.key, res.TASK_ACTION_EXECUTING)
    model = ledger.produce(task)
    created = [(e.asset_kind, e.asset_key) for e in ledger.events() if e.event_kind == ev.EVENT_ASSET_CREATED][-2:]
    assert created == [(res.ASSET_MODEL, model.key), (res.ASSET_COMPUTE_TASK_OUTPUT_ASSET, f"{task.key}|model")]


def test_a_single_output_takes_one_model(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    task = ledger.add_task(plan, function)
    ledger.act(ORG1, task.key, res.TASK_ACTION_EXECUTING)
    ledger.produce(task)
    with pytest.raises(AlreadyExists):
        ledger.produce(task)


def test_a_transient_output_is_disabled_once_every_child_is_final(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    parent = ledger.add_task(plan, function, model=TRANSIENT)
    child = ledger.add_task(plan, function, [from_parent(parent.key)])
    ledger.run(parent)
    with pytest.raises(FailedPrecondition) as early:
        disable(ledger, ORG1, parent.key)
    assert early.value.reason == "CHILDREN_NOT_FINAL"

    ledger.run(ledger.task(child.key))
    (model,) = disable(ledger, ORG1, parent.key)
    assert not model.HasField("address")
    assert [e.asset_key for e in ledger.events() if e.event_kind == ev.EVENT_ASSET_DISABLED] == [model.key]
    disable(ledger, ORG1, parent.key)  # a second time changes nothing and tells no one
    assert len([e for e in ledger.events() if e.event_kind == ev.EVENT_ASSET_DISABLED]) == 1


@pytest.mark.parametrize(
    ("output", "with_child", "reason"),
    [
        (tasks.NewTaskOutput(permissions=public()), True, "NOT_TRANSIENT"),
        (TRANSIENT, False, "NO_CHILD"),
    ],
)
def test_disabling_needs_a_transient_output_with_children(ledger, output, with_child, reason):
    plan, function = ledger.compute_plan(), ledger.function()
    parent = ledger.add_task(plan, function, model=output)
    if with_child:
        child = ledger.add_task(plan, function, [from_parent(parent.key)])
    ledger.run(parent)
    if with_child:
        ledger.run(ledger.task(child.key))
    with pytest.raises(FailedPrecondition) as refused:
        disable(ledger, ORG1, parent.key)
    assert refused.value.reason == reason


def test_only_the_worker_of_a_final_task_disables_its_outputs(ledger):
    plan, function = ledger.compute_plan(ORG1), ledger.function()
    parent = ledger.add_task(plan, function, worker=ORG2, model=TRANSIENT)
    with pytest.raises(FailedPrecondition) as not_final:
        disable(ledger, ORG2, parent.key)
    assert not_final.value.reason == "TASK_NOT_FINAL"
    ledger.run(parent)
    with pytest.raises(PermissionDenied):
        disable(ledger, ORG1, parent.key)  # the owner is not the worker


def test_completing_a_task_registers_its_outputs_and_done_together(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    task = ledger.add_task(plan, function)
    child = ledger.add_task(plan, function, [from_parent(task.key)])
    elsewhere = ledger.add_task(plan, function, [from_parent(task.key)], worker=ORG2)
    started = ledger.write(ORG1, lambda ctx: work.start_task(ctx, task.key))
    assert started.started and started.task.status == res.STATUS_EXECUTING and started.registered == []
    done = work.Completion(
        task_key=task.key,
        models=[outputs.NewModel(new_key(), task.key, "model", address("model"))],
        profiling_steps=[work.TaskStep("task_execution", 1200)],
    )
    finished = ledger.write(ORG1, lambda ctx: work.complete_task(ctx, done))
    assert finished.task.status == res.STATUS_DONE
    assert ledger.status(child.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    assert ledger.status(elsewhere.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    assert [t.key for t in finished.ready] == [child.key]  # the tasks the same worker may start at once
    inputs = ledger.read(ORG1, lambda ctx: tasks.input_assets(ctx, child.key))
    assert [a.model.key for a in inputs] == [done.models[0].key]


def test_a_refused_completion_registers_nothing(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    task = ledger.add_task(plan, function)
    ledger.write(ORG1, lambda ctx: work.start_task(ctx, task.key))
    before = ledger.events()
    done = work.Completion(
        task_key=task.key,
        models=[outputs.NewModel(new_key(), task.key, "model", address("model"))],
        performances=[work.TaskPerformance("model", 0.5)],  # refused once the model is registered
    )
    with pytest.raises(InvalidArgument):
        ledger.write(ORG1, lambda ctx: work.complete_task(ctx, done))
    assert ledger.events() == before
    assert ledger.status(task.key) == res.STATUS_EXECUTING
    restarted = ledger.write(ORG1, lambda ctx: work.start_task(ctx, task.key))
    assert restarted.registered == []
