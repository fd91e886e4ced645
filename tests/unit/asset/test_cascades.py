"""What one transition does to other tasks (domain §2.1, §2.2, §2.4 and where ADR 0003 departs from
Substra on purpose): parents done release children, failures and cancels end the descendants, a build's
fate reaches every task of the function, canceling a plan cancels its unfinished tasks."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import outputs, plans, work
from services.kit.errors import FailedPrecondition
from tests.unit.asset.conftest import ORG1, ORG2, address, from_parent


def reasons(ledger, key: str) -> list[str]:
    return [
        e.metadata["reason"]
        for e in ledger.events()
        if e.asset_key == key and e.asset_kind == res.ASSET_COMPUTE_TASK and e.event_kind == ev.EVENT_ASSET_UPDATED
    ]


# ------------------------------------------------------------------------------ parents done
def test_a_child_becomes_ready_when_its_last_parent_is_done(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    first, second = ledger.add_task(plan, function), ledger.add_task(plan, function)
    child = ledger.add_task(plan, function, [from_parent(first.key), from_parent(second.key)])
    assert ledger.status(child.key) == res.STATUS_WAITING_FOR_PARENT_TASKS

    ledger.run(first)
    assert ledger.status(child.key) == res.STATUS_WAITING_FOR_PARENT_TASKS  # one parent still running
    ledger.run(second)
    assert ledger.status(child.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    assert reasons(ledger, child.key) == [f"last parent task {second.key} done"]


def test_a_done_parent_leaves_a_child_still_waiting_for_its_build(ledger):
    plan = ledger.compute_plan()
    parent = ledger.add_task(plan, ledger.function())
    unbuilt = ledger.function(built=False)
    child = ledger.add_task(plan, unbuilt, [from_parent(parent.key)])
    ledger.run(parent)
    assert ledger.status(child.key) == res.STATUS_WAITING_FOR_BUILDER_SLOT
    # Built later, it finds its parent done and goes straight to the executor queue.
    ledger.function_action(ORG1, unbuilt.key, res.FUNCTION_ACTION_BUILDING)
    ledger.function_action(ORG1, unbuilt.key, res.FUNCTION_ACTION_READY)
    assert ledger.status(child.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT


# ------------------------------------------------------------------------- failures and cancels
@pytest.mark.parametrize(
    ("action", "verb"), [(res.TASK_ACTION_FAILED, "failed"), (res.TASK_ACTION_CANCELED, "was canceled")]
)
def test_the_descendants_of_a_failed_or_canceled_task_are_canceled(ledger, action, verb):
    plan, function = ledger.compute_plan(), ledger.function()
    root = ledger.add_task(plan, function)
    child = ledger.add_task(plan, function, [from_parent(root.key)])
    grandchild = ledger.add_task(plan, function, [from_parent(child.key)])
    bystander = ledger.add_task(plan, function)
    ledger.act(ORG1, root.key, res.TASK_ACTION_EXECUTING)
    ledger.act(ORG1, root.key, action)

    assert ledger.status(child.key) == res.STATUS_CANCELED
    assert ledger.status(grandchild.key) == res.STATUS_CANCELED
    assert ledger.status(bystander.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    assert reasons(ledger, child.key) == [f"parent task {root.key} {verb}"]
    assert reasons(ledger, grandchild.key) == [f"parent task {child.key} was canceled"]


def test_a_task_registered_under_a_canceled_parent_is_born_canceled(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    parent = ledger.add_task(plan, function)
    ledger.act(ORG1, parent.key, res.TASK_ACTION_CANCELED)
    child = ledger.add_task(plan, function, [from_parent(parent.key)])
    assert child.status == res.STATUS_CANCELED


def test_tasks_of_a_failed_build_are_born_failed_and_their_children_canceled(ledger):
    plan = ledger.compute_plan()
    broken = ledger.function(built=False)
    ledger.function_action(ORG1, broken.key, res.FUNCTION_ACTION_BUILDING)
    logs = address("logs")
    ledger.write(
        ORG1,
        lambda ctx: outputs.register_failure_report(ctx, broken.key, res.FAILED_ASSET_FUNCTION, res.BUILD_ERROR, logs),
    )
    parent = ledger.new_task(plan, broken)
    child = ledger.new_task(plan, ledger.function(), [from_parent(parent.key)])
    born = ledger.register(ORG1, parent, child)
    assert [t.status for t in born] == [res.STATUS_FAILED, res.STATUS_CANCELED]
    assert born[0].error_type == res.BUILD_ERROR
    # Its logs are the build's, as for the tasks that were waiting when the build failed.
    assert born[0].logs_address == logs and ledger.task(parent.key).logs_address == logs
    assert ledger.plan(plan.key).status == res.PLAN_STATUS_FAILED
    with pytest.raises(FailedPrecondition) as refused:  # a failed plan takes no more tasks
        ledger.add_task(plan, ledger.function())
    assert refused.value.reason == "PLAN_TERMINATED"


def test_a_failure_sets_the_plan_failure_date_and_failed_task_once(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    first, second = ledger.add_task(plan, function), ledger.add_task(plan, function)
    ledger.act(ORG1, first.key, res.TASK_ACTION_FAILED)
    failed_at = ledger.now
    ledger.later(10)
    ledger.act(ORG1, second.key, res.TASK_ACTION_FAILED)
    stored = ledger.plan(plan.key)
    assert stored.failed_task_key == first.key
    assert stored.failure_date.ToDatetime(failed_at.tzinfo) == failed_at
    assert stored.status == res.PLAN_STATUS_FAILED


# ------------------------------------------------------------------------------ function builds
def test_a_build_failure_fails_every_task_of_the_function_then_cancels_other_descendants(ledger):
    plan = ledger.compute_plan()
    function = ledger.function(built=False)
    other = ledger.function()
    waiting = ledger.add_task(plan, function)
    ledger.function_action(ORG1, function.key, res.FUNCTION_ACTION_BUILDING)
    building = ledger.add_task(plan, function)  # born BUILDING
    chained = ledger.add_task(plan, function, [from_parent(building.key)])  # same function, as a child
    downstream = ledger.add_task(plan, other, [from_parent(building.key)])
    assert ledger.status(building.key) == res.STATUS_BUILDING

    logs = address("logs")
    ledger.write(
        ORG1,
        lambda ctx: outputs.register_failure_report(
            ctx, function.key, res.FAILED_ASSET_FUNCTION, res.BUILD_ERROR, logs
        ),
    )
    for key in (waiting.key, building.key, chained.key):
        failed = ledger.task(key)
        assert failed.status == res.STATUS_FAILED
        assert failed.error_type == res.BUILD_ERROR
        assert failed.logs_address == logs
        assert reasons(ledger, key)[-1] == f"function {function.key} failed to build"
    assert ledger.status(downstream.key) == res.STATUS_CANCELED
    assert ledger.read(ORG1, lambda ctx: plans.get_plan(ctx, plan.key)).failed_task_key == waiting.key


def test_a_canceled_build_cancels_the_tasks_waiting_for_it(ledger):
    plan = ledger.compute_plan()
    function = ledger.function(built=False)
    waiting = ledger.add_task(plan, function)
    ledger.function_action(ORG1, function.key, res.FUNCTION_ACTION_CANCELED)
    assert ledger.status(waiting.key) == res.STATUS_CANCELED
    assert reasons(ledger, waiting.key) == [f"build of function {function.key} was canceled"]


def test_a_build_failure_is_a_failure_report_never_an_action(ledger):
    function = ledger.function(built=False)
    ledger.function_action(ORG1, function.key, res.FUNCTION_ACTION_BUILDING)
    with pytest.raises(FailedPrecondition) as refused:
        ledger.function_action(ORG1, function.key, res.FUNCTION_ACTION_FAILED)
    assert refused.value.reason == "USE_FAILURE_REPORT"


@pytest.mark.parametrize(
    ("steps", "action"),
    [
        ([], res.FUNCTION_ACTION_READY),  # WAITING → READY skips the build
        ([res.FUNCTION_ACTION_BUILDING], res.FUNCTION_ACTION_BUILDING),
        ([res.FUNCTION_ACTION_BUILDING, res.FUNCTION_ACTION_READY], res.FUNCTION_ACTION_CANCELED),
    ],
)
def test_illegal_function_transitions_are_refused(ledger, steps, action):
    function = ledger.function(built=False)
    for step in steps:
        ledger.function_action(ORG1, function.key, step)
    with pytest.raises(FailedPrecondition) as refused:
        ledger.function_action(ORG1, function.key, action)
    assert refused.value.reason == "ILLEGAL_TRANSITION"


# ------------------------------------------------------------------------------ canceling a plan
def test_canceling_a_plan_cancels_its_unfinished_tasks_running_ones_included(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    done = ledger.add_task(plan, function)
    ledger.run(done)
    running = ledger.add_task(plan, function, [from_parent(done.key)])
    ledger.act(ORG1, running.key, res.TASK_ACTION_EXECUTING)
    waiting = ledger.add_task(plan, function, [from_parent(running.key)])
    ledger.later(30)
    ledger.write(ORG1, lambda ctx: plans.cancel_plan(ctx, plan.key))

    assert ledger.status(done.key) == res.STATUS_DONE
    assert ledger.status(running.key) == res.STATUS_CANCELED
    assert ledger.status(waiting.key) == res.STATUS_CANCELED
    stored = ledger.plan(plan.key)
    assert stored.status == res.PLAN_STATUS_CANCELED
    assert stored.end_date == stored.cancelation_date
    assert stored.cancelation_date.ToDatetime(ledger.now.tzinfo) == ledger.now
    with pytest.raises(FailedPrecondition) as again:
        ledger.write(ORG1, lambda ctx: plans.cancel_plan(ctx, plan.key))
    assert again.value.reason == "PLAN_TERMINATED"


def test_a_worker_starting_a_task_of_a_failed_plan_cancels_it_instead(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    failing = ledger.add_task(plan, function)
    ready = ledger.add_task(plan, function, worker=ORG2)
    ledger.act(ORG1, failing.key, res.TASK_ACTION_FAILED)
    assert ledger.status(ready.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT  # failures do not cancel bystanders

    started = ledger.write(ORG2, lambda ctx: work.start_task(ctx, ready.key))
    assert not started.started
    assert started.task.status == res.STATUS_CANCELED
    assert reasons(ledger, ready.key) == [work.NOT_RUNNABLE]
