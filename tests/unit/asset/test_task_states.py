"""The compute task state machine (domain §2.2): every allowed transition, who may trigger it, what it
records, and a sample of the refused ones."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import tasks
from services.kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from tests.unit.asset.conftest import ORG1, ORG2, ORG3, Ledger, from_parent

NON_FINAL = [
    res.STATUS_WAITING_FOR_BUILDER_SLOT,
    res.STATUS_BUILDING,
    res.STATUS_WAITING_FOR_PARENT_TASKS,
    res.STATUS_WAITING_FOR_EXECUTOR_SLOT,
    res.STATUS_EXECUTING,
]


def task_in(ledger: Ledger, status: int, worker: str = ORG1) -> res.ComputeTask:
    """A task of a plan owned by ORG1, run by ``worker``, brought to ``status`` the way the ledger does."""
    plan = ledger.compute_plan(ORG1)
    if status in (res.STATUS_WAITING_FOR_BUILDER_SLOT, res.STATUS_BUILDING):
        function = ledger.function(ORG1, built=False)
        task = ledger.add_task(plan, function, worker=worker)
        if status == res.STATUS_BUILDING:
            ledger.function_action(ORG1, function.key, res.FUNCTION_ACTION_BUILDING)
    elif status == res.STATUS_WAITING_FOR_PARENT_TASKS:
        function = ledger.function(ORG1)
        parent = ledger.add_task(plan, function, worker=worker)
        task = ledger.add_task(plan, function, [from_parent(parent.key)], worker=worker)
    else:
        task = ledger.add_task(plan, ledger.function(ORG1), worker=worker)
        if status in (res.STATUS_EXECUTING, res.STATUS_DONE):
            ledger.act(worker, task.key, res.TASK_ACTION_EXECUTING)
        if status == res.STATUS_DONE:
            ledger.act(worker, task.key, res.TASK_ACTION_DONE)
    assert ledger.status(task.key) == status
    return ledger.task(task.key)


def last_task_event(ledger: Ledger, key: str) -> ev.Event:
    return [e for e in ledger.events() if e.asset_key == key][-1]


# --------------------------------------------------------------------------------- allowed moves
def test_building_moves_waiting_for_builder_slot_to_building(ledger):
    task = task_in(ledger, res.STATUS_BUILDING)
    event = last_task_event(ledger, task.key)
    assert (event.status_change.previous, event.status_change.current) == (
        res.STATUS_WAITING_FOR_BUILDER_SLOT,
        res.STATUS_BUILDING,
    )


def test_ready_function_sends_a_parentless_task_to_the_executor_queue(ledger):
    plan = ledger.compute_plan()
    function = ledger.function(built=False)
    task = ledger.add_task(plan, function)
    ledger.function_action(ORG1, function.key, res.FUNCTION_ACTION_BUILDING)
    ledger.function_action(ORG1, function.key, res.FUNCTION_ACTION_READY)
    assert ledger.status(task.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    assert last_task_event(ledger, task.key).metadata["reason"] == f"function {function.key} finished building"


def test_ready_function_makes_a_task_with_an_unfinished_parent_wait_for_it(ledger):
    plan = ledger.compute_plan()
    parent = ledger.add_task(plan, ledger.function())
    function = ledger.function(built=False)
    child = ledger.add_task(plan, function, [from_parent(parent.key)])
    ledger.function_action(ORG1, function.key, res.FUNCTION_ACTION_BUILDING)
    ledger.function_action(ORG1, function.key, res.FUNCTION_ACTION_READY)
    assert ledger.status(child.key) == res.STATUS_WAITING_FOR_PARENT_TASKS


def test_the_worker_starts_then_completes_a_task_with_dates_and_events(ledger):
    task = task_in(ledger, res.STATUS_WAITING_FOR_EXECUTOR_SLOT)
    ledger.later(5)
    ledger.act(ORG1, task.key, res.TASK_ACTION_EXECUTING)
    started = ledger.task(task.key)
    assert started.status == res.STATUS_EXECUTING
    assert started.start_date.ToDatetime(ledger.now.tzinfo) == ledger.now
    assert not started.HasField("end_date")

    ledger.later(60)
    ledger.act(ORG1, task.key, res.TASK_ACTION_DONE)
    done = ledger.task(task.key)
    assert done.status == res.STATUS_DONE
    assert done.end_date.ToDatetime(ledger.now.tzinfo) == ledger.now
    assert done.duration == 60
    moves = [
        (e.status_change.previous, e.status_change.current, e.metadata["reason"])
        for e in ledger.events()
        if e.asset_key == task.key and e.event_kind == ev.EVENT_ASSET_UPDATED
    ]
    assert moves == [
        (res.STATUS_WAITING_FOR_EXECUTOR_SLOT, res.STATUS_EXECUTING, "User action"),
        (res.STATUS_EXECUTING, res.STATUS_DONE, "User action"),
    ]


@pytest.mark.parametrize("status", NON_FINAL, ids=res.ComputeTaskStatus.Name)
@pytest.mark.parametrize("by", [ORG1, ORG2], ids=["owner", "worker"])
def test_the_owner_or_the_worker_may_cancel_a_task_in_any_non_final_status(ledger, status, by):
    task = task_in(ledger, status, worker=ORG2)
    ledger.act(by, task.key, res.TASK_ACTION_CANCELED)
    canceled = ledger.task(task.key)
    assert canceled.status == res.STATUS_CANCELED
    assert canceled.HasField("end_date")
    event = last_task_event(ledger, task.key)
    assert (event.status_change.previous, event.status_change.current) == (status, res.STATUS_CANCELED)


@pytest.mark.parametrize("status", NON_FINAL, ids=res.ComputeTaskStatus.Name)
def test_a_task_in_any_non_final_status_may_be_failed_and_gets_an_error_type(ledger, status):
    task = task_in(ledger, status)
    ledger.act(ORG1, task.key, res.TASK_ACTION_FAILED)
    failed = ledger.task(task.key)
    assert failed.status == res.STATUS_FAILED
    # The SDK waits forever on a FAILED task without an error type: an action records ours.
    assert failed.error_type == res.INTERNAL_ERROR


# --------------------------------------------------------------------------------- refused moves
@pytest.mark.parametrize(
    ("status", "action"),
    [
        (res.STATUS_WAITING_FOR_EXECUTOR_SLOT, res.TASK_ACTION_DONE),
        (res.STATUS_WAITING_FOR_PARENT_TASKS, res.TASK_ACTION_EXECUTING),
        (res.STATUS_WAITING_FOR_BUILDER_SLOT, res.TASK_ACTION_EXECUTING),
        (res.STATUS_BUILDING, res.TASK_ACTION_DONE),
        (res.STATUS_EXECUTING, res.TASK_ACTION_EXECUTING),
        (res.STATUS_DONE, res.TASK_ACTION_CANCELED),
        (res.STATUS_DONE, res.TASK_ACTION_FAILED),
        (res.STATUS_DONE, res.TASK_ACTION_DONE),
    ],
)
def test_illegal_transitions_are_refused_and_change_nothing(ledger, status, action):
    task = task_in(ledger, status)
    before = ledger.events()
    with pytest.raises(FailedPrecondition) as refused:
        ledger.act(ORG1, task.key, action)
    assert refused.value.reason == "ILLEGAL_TRANSITION"
    assert refused.value.metadata["status"] == res.ComputeTaskStatus.Name(status)
    assert ledger.status(task.key) == status
    assert ledger.events() == before


@pytest.mark.parametrize("final", [res.TASK_ACTION_CANCELED, res.TASK_ACTION_FAILED])
def test_a_canceled_or_failed_task_stays_so(ledger, final):
    task = task_in(ledger, res.STATUS_EXECUTING)
    ledger.act(ORG1, task.key, final)
    for action in (res.TASK_ACTION_CANCELED, res.TASK_ACTION_FAILED, res.TASK_ACTION_DONE):
        with pytest.raises(FailedPrecondition):
            ledger.act(ORG1, task.key, action)


def test_build_transitions_are_not_actions_a_caller_may_apply(ledger):
    task = task_in(ledger, res.STATUS_WAITING_FOR_EXECUTOR_SLOT)
    with pytest.raises(InvalidArgument):
        ledger.act(ORG1, task.key, res.TASK_ACTION_UNKNOWN)
    assert set(tasks.ACTIONS.values()) == {
        res.STATUS_EXECUTING,
        res.STATUS_DONE,
        res.STATUS_CANCELED,
        res.STATUS_FAILED,
    }


# ----------------------------------------------------------------------------------- who may act
@pytest.mark.parametrize("action", [res.TASK_ACTION_EXECUTING, res.TASK_ACTION_DONE])
def test_only_the_worker_starts_or_completes_a_task(ledger, action):
    task = task_in(ledger, res.STATUS_WAITING_FOR_EXECUTOR_SLOT, worker=ORG2)
    if action == res.TASK_ACTION_DONE:
        ledger.act(ORG2, task.key, res.TASK_ACTION_EXECUTING)
    with pytest.raises(PermissionDenied):
        ledger.act(ORG1, task.key, action)  # the owner, not the worker


@pytest.mark.parametrize("action", [res.TASK_ACTION_CANCELED, res.TASK_ACTION_FAILED])
def test_an_organization_neither_owner_nor_worker_may_not_cancel_or_fail(ledger, action):
    task = task_in(ledger, res.STATUS_EXECUTING, worker=ORG2)
    with pytest.raises(PermissionDenied):
        ledger.act(ORG3, task.key, action)
    assert ledger.status(task.key) == res.STATUS_EXECUTING
