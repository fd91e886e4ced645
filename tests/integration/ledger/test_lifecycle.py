"""Lifecycles of the ledger: the function build state machine and its propagation to tasks, the task
state machine with its access matrix and cascades, compute plan cancel, counters, derived status
and dates, and long chains (domain §2.1-2.4, §1.15, and our deliberate differences in §8)."""

from __future__ import annotations

import collections
import concurrent.futures
import datetime as dt
import threading

import grpc
import pytest
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from tests.integration.ledger.conftest import (
    AGGREGATE_IO,
    ORGS,
    act,
    address,
    call_error,
    make_function,
    make_plan,
    model_input,
    new_key,
    parent_input,
    status,
    task_spec,
)

# A function with an optional model input: tasks chain without any data.
CHAIN_IO = {
    "inputs": {"model": model_input(optional=True)},
    "outputs": {"model": res.FunctionOutput(kind=res.ASSET_MODEL)},
}
COUNTERS = {
    res.STATUS_WAITING_FOR_BUILDER_SLOT: "waiting_builder_slot_count",
    res.STATUS_BUILDING: "building_count",
    res.STATUS_WAITING_FOR_PARENT_TASKS: "waiting_parent_tasks_count",
    res.STATUS_WAITING_FOR_EXECUTOR_SLOT: "waiting_executor_slot_count",
    res.STATUS_EXECUTING: "executing_count",
    res.STATUS_DONE: "done_count",
    res.STATUS_CANCELED: "canceled_count",
    res.STATUS_FAILED: "failed_count",
}


# ------------------------------------------------------------------------------------------ helpers
def chain_task(plan_key: str, function: res.Function, parent_key: str = "", worker: str = ORGS[0]):
    """A task of a CHAIN_IO ``function``, fed by the model of ``parent_key`` when given."""
    inputs = [parent_input("model", parent_key)] if parent_key else []
    return task_spec(plan_key, function, inputs, worker=worker)


def register(stub, *specs) -> list[res.ComputeTask]:
    return list(stub.RegisterTasks(api.RegisterTasksRequest(tasks=list(specs))).tasks)


def function_action(stub, key: str, action: int, reason: str = "") -> None:
    stub.ApplyFunctionAction(api.ApplyFunctionActionRequest(function_key=key, action=action, reason=reason))


def function_status(stub, key: str) -> int:
    return stub.GetFunction(api.GetFunctionRequest(key=key)).function.status


def get_plan(stub, key: str) -> res.ComputePlan:
    return stub.GetComputePlan(api.GetComputePlanRequest(key=key)).compute_plan


def get_task(stub, key: str) -> res.ComputeTask:
    return stub.GetTask(api.GetTaskRequest(key=key)).task


def events_of(stub, key: str, kind: int = res.ASSET_UNKNOWN) -> list[ev.Event]:
    return list(stub.QueryEvents(api.QueryEventsRequest(asset_key=key, asset_kind=kind, page_size=1000)).events)


def last_reason(stub, task_key: str) -> str:
    """The reason carried by the latest event about a task."""
    return events_of(stub, task_key, res.ASSET_COMPUTE_TASK)[-1].metadata["reason"]


def report_task_failure(stub, key: str, error_type: int = res.EXECUTION_ERROR, logs=None) -> res.FailureReport:
    request = api.RegisterFailureReportRequest(
        asset_key=key, asset_type=res.FAILED_ASSET_COMPUTE_TASK, error_type=error_type, logs_address=logs
    )
    return stub.RegisterFailureReport(request).failure_report


def report_build_failure(stub, key: str, logs=None) -> res.FailureReport:
    request = api.RegisterFailureReportRequest(
        asset_key=key, asset_type=res.FAILED_ASSET_FUNCTION, error_type=res.BUILD_ERROR, logs_address=logs
    )
    return stub.RegisterFailureReport(request).failure_report


def assert_counters_match(stub, plan_key: str) -> res.ComputePlan:
    """The plan's counters equal a recount of its tasks."""
    plan = get_plan(stub, plan_key)
    listed = stub.ListTasks(api.ListTasksRequest(compute_plan_key=[plan_key], page_size=1000))
    counted = collections.Counter(t.status for t in listed.tasks)
    assert plan.task_count == listed.total_size == len(listed.tasks)
    assert {name: getattr(plan, name) for name in COUNTERS.values()} == {
        name: counted.get(task_status, 0) for task_status, name in COUNTERS.items()
    }
    return plan


def when(stamp) -> dt.datetime:
    return stamp.ToDatetime(dt.UTC)


# --------------------------------------------------------------------------- function state machine
def test_function_builds_waiting_building_ready(ledger):
    function = make_function(ledger.org1, io=CHAIN_IO, ready=False)
    assert function.status == res.FUNCTION_STATUS_WAITING
    function_action(ledger.org1, function.key, res.FUNCTION_ACTION_BUILDING, reason="builder picked it up")
    assert function_status(ledger.org2, function.key) == res.FUNCTION_STATUS_BUILDING
    function_action(ledger.org1, function.key, res.FUNCTION_ACTION_READY)
    assert function_status(ledger.org3, function.key) == res.FUNCTION_STATUS_READY

    updates = [e for e in events_of(ledger.org1, function.key) if e.event_kind == ev.EVENT_ASSET_UPDATED]
    assert [e.function.status for e in updates] == [res.FUNCTION_STATUS_BUILDING, res.FUNCTION_STATUS_READY]
    assert [e.metadata["reason"] for e in updates] == ["builder picked it up", "User action"]
    assert [(e.status_change.previous, e.status_change.current) for e in updates] == [
        (res.FUNCTION_STATUS_WAITING, res.FUNCTION_STATUS_BUILDING),
        (res.FUNCTION_STATUS_BUILDING, res.FUNCTION_STATUS_READY),
    ]


@pytest.mark.parametrize("build_first", [False, True], ids=["from-waiting", "from-building"])
def test_function_can_be_canceled_before_it_is_ready(ledger, build_first):
    function = make_function(ledger.org1, io=CHAIN_IO, ready=False)
    if build_first:
        function_action(ledger.org1, function.key, res.FUNCTION_ACTION_BUILDING)
    function_action(ledger.org1, function.key, res.FUNCTION_ACTION_CANCELED)
    assert function_status(ledger.org1, function.key) == res.FUNCTION_STATUS_CANCELED


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ([], res.FUNCTION_ACTION_READY),
        ([res.FUNCTION_ACTION_BUILDING], res.FUNCTION_ACTION_BUILDING),
        ([res.FUNCTION_ACTION_BUILDING, res.FUNCTION_ACTION_READY], res.FUNCTION_ACTION_BUILDING),
        ([res.FUNCTION_ACTION_BUILDING, res.FUNCTION_ACTION_READY], res.FUNCTION_ACTION_READY),
        ([res.FUNCTION_ACTION_BUILDING, res.FUNCTION_ACTION_READY], res.FUNCTION_ACTION_CANCELED),
        ([res.FUNCTION_ACTION_CANCELED], res.FUNCTION_ACTION_BUILDING),
        ([res.FUNCTION_ACTION_CANCELED], res.FUNCTION_ACTION_CANCELED),
        ([res.FUNCTION_ACTION_BUILDING, res.FUNCTION_ACTION_CANCELED], res.FUNCTION_ACTION_READY),
    ],
    ids=[
        "waiting-ready",
        "building-building",
        "ready-building",
        "ready-ready",
        "ready-canceled",
        "canceled-building",
        "canceled-canceled",
        "canceled-ready",
    ],
)
def test_function_illegal_transitions_are_refused(ledger, path, action):
    function = make_function(ledger.org1, io=CHAIN_IO, ready=False)
    for step in path:
        function_action(ledger.org1, function.key, step)
    before = function_status(ledger.org1, function.key)
    error = call_error(function_action, ledger.org1, function.key, action)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")
    assert function_status(ledger.org1, function.key) == before


def test_only_the_owner_acts_on_a_function(ledger):
    function = make_function(ledger.org1, io=CHAIN_IO, ready=False)
    for action in (
        res.FUNCTION_ACTION_BUILDING,
        res.FUNCTION_ACTION_READY,
        res.FUNCTION_ACTION_CANCELED,
        res.FUNCTION_ACTION_FAILED,
    ):
        assert call_error(function_action, ledger.org2, function.key, action).code == grpc.StatusCode.PERMISSION_DENIED
    # Nor report its build failure.
    function_action(ledger.org1, function.key, res.FUNCTION_ACTION_BUILDING)
    assert call_error(report_build_failure, ledger.org3, function.key).code == grpc.StatusCode.PERMISSION_DENIED
    assert function_status(ledger.org1, function.key) == res.FUNCTION_STATUS_BUILDING


def test_function_failure_goes_through_a_failure_report(ledger):
    function = make_function(ledger.org1, io=CHAIN_IO, ready=False)
    function_action(ledger.org1, function.key, res.FUNCTION_ACTION_BUILDING)
    error = call_error(function_action, ledger.org1, function.key, res.FUNCTION_ACTION_FAILED)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "USE_FAILURE_REPORT")
    assert function_status(ledger.org1, function.key) == res.FUNCTION_STATUS_BUILDING
    error = call_error(function_action, ledger.org1, function.key, res.FUNCTION_ACTION_UNKNOWN)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


def test_build_failure_of_a_waiting_function_is_refused(ledger):
    function = make_function(ledger.org1, io=CHAIN_IO, ready=False)
    error = call_error(report_build_failure, ledger.org1, function.key, address("logs"))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")
    # Nothing was recorded: the report went with the refused transition.
    assert call_error(ledger.org1.GetFailureReport, api.GetFailureReportRequest(asset_key=function.key)).code == (
        grpc.StatusCode.NOT_FOUND
    )


# --------------------------------------------------------------------------- propagation to tasks
def test_build_progress_moves_the_tasks_of_the_function(ledger):
    org1 = ledger.org1
    building = make_function(org1, io=CHAIN_IO, ready=False)
    ready = make_function(org1, io=CHAIN_IO)
    plan = make_plan(org1)
    parent = chain_task(plan.key, ready)
    root = chain_task(plan.key, building)
    child = chain_task(plan.key, building, parent.key)
    created = {t.key: t.status for t in register(org1, parent, root, child)}
    assert created[root.key] == created[child.key] == res.STATUS_WAITING_FOR_BUILDER_SLOT

    function_action(org1, building.key, res.FUNCTION_ACTION_BUILDING)
    assert status(org1, root.key) == status(org1, child.key) == res.STATUS_BUILDING
    assert last_reason(org1, root.key) == f"function {building.key} is building"
    # A task registered while its function builds starts BUILDING.
    late = chain_task(plan.key, building)
    assert register(org1, late)[0].status == res.STATUS_BUILDING

    function_action(org1, building.key, res.FUNCTION_ACTION_READY)
    assert status(org1, root.key) == status(org1, late.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    assert status(org1, child.key) == res.STATUS_WAITING_FOR_PARENT_TASKS
    assert last_reason(org1, child.key) == f"function {building.key} finished building"

    act(org1, parent.key, res.TASK_ACTION_EXECUTING)
    act(org1, parent.key, res.TASK_ACTION_DONE)
    assert status(org1, child.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    assert_counters_match(org1, plan.key)


def test_a_ready_function_releases_tasks_whose_parents_are_already_done(ledger):
    org1 = ledger.org1
    building = make_function(org1, io=CHAIN_IO, ready=False)
    ready = make_function(org1, io=CHAIN_IO)
    plan = make_plan(org1)
    parent = chain_task(plan.key, ready)
    child = chain_task(plan.key, building, parent.key)
    register(org1, parent, child)
    function_action(org1, building.key, res.FUNCTION_ACTION_BUILDING)
    act(org1, parent.key, res.TASK_ACTION_EXECUTING)
    act(org1, parent.key, res.TASK_ACTION_DONE)
    # The parent is done but the child still waits for its image.
    assert status(org1, child.key) == res.STATUS_BUILDING
    function_action(org1, building.key, res.FUNCTION_ACTION_READY)
    assert status(org1, child.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT


def test_plan_waiting_for_builds_is_created(ledger):
    org1 = ledger.org1
    function = make_function(org1, io=CHAIN_IO, ready=False)
    plan = make_plan(org1)
    root = chain_task(plan.key, function)
    register(org1, root, chain_task(plan.key, function, root.key))
    waiting = get_plan(org1, plan.key)
    assert waiting.status == res.PLAN_STATUS_CREATED and waiting.waiting_builder_slot_count == 2
    assert not waiting.HasField("start_date") and waiting.duration == 0
    function_action(org1, function.key, res.FUNCTION_ACTION_BUILDING)
    building = get_plan(org1, plan.key)
    assert building.status == res.PLAN_STATUS_DOING and building.HasField("start_date")
    assert building.building_count == 2


def test_build_failure_fails_the_tasks_and_cancels_their_children(ledger):
    org1 = ledger.org1
    broken = make_function(org1, io=CHAIN_IO, ready=False)
    ready = make_function(org1, io=CHAIN_IO)
    plan, other_plan = make_plan(org1), make_plan(org1)
    first = chain_task(plan.key, broken)
    child = chain_task(plan.key, ready, first.key)
    grandchild = chain_task(plan.key, ready, child.key)
    elsewhere = chain_task(other_plan.key, broken)
    register(org1, first, child, grandchild)
    register(org1, elsewhere)
    function_action(org1, broken.key, res.FUNCTION_ACTION_BUILDING)

    logs = address("logs")
    report = report_build_failure(org1, broken.key, logs)
    assert (report.owner, report.asset_type, report.error_type) == (
        ORGS[0],
        res.FAILED_ASSET_FUNCTION,
        res.BUILD_ERROR,
    )
    assert function_status(org1, broken.key) == res.FUNCTION_STATUS_FAILED
    for key, plan_key in ((first.key, plan.key), (elsewhere.key, other_plan.key)):
        failed = get_task(org1, key)
        assert failed.status == res.STATUS_FAILED and failed.error_type == res.BUILD_ERROR
        assert failed.logs_address == logs and failed.HasField("end_date")
        failed_plan = get_plan(org1, plan_key)
        assert failed_plan.status == res.PLAN_STATUS_FAILED
        assert failed_plan.HasField("failure_date") and failed_plan.failed_task_key == key
    assert status(org1, child.key) == status(org1, grandchild.key) == res.STATUS_CANCELED
    assert last_reason(org1, child.key) == f"parent task {first.key} failed"
    assert last_reason(org1, grandchild.key) == f"parent task {child.key} was canceled"
    assert last_reason(org1, first.key) == f"function {broken.key} failed to build"
    assert org1.GetFailureReport(api.GetFailureReportRequest(asset_key=broken.key)).failure_report == report
    assert_counters_match(org1, plan.key)

    error = call_error(report_build_failure, org1, broken.key)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    # A task registered afterwards is born FAILED with the build error, and fails its plan.
    third_plan = make_plan(org1)
    born = register(org1, chain_task(third_plan.key, broken))[0]
    assert born.status == res.STATUS_FAILED and born.error_type == res.BUILD_ERROR
    born_plan = get_plan(org1, third_plan.key)
    assert born_plan.status == res.PLAN_STATUS_FAILED and born_plan.failed_task_key == born.key
    assert born_plan.HasField("failure_date")


def test_build_failure_fails_every_task_of_the_function_even_chained(ledger):
    """Rounds of one function chain on each other: each of its tasks fails with the build error,
    not only the first round; only the tasks of other functions downstream are canceled."""
    org1 = ledger.org1
    broken = make_function(org1, io=CHAIN_IO, ready=False)
    ready = make_function(org1, io=CHAIN_IO)
    plan = make_plan(org1)
    first = chain_task(plan.key, broken)
    second = chain_task(plan.key, broken, first.key)
    downstream = chain_task(plan.key, ready, second.key)
    register(org1, first, second, downstream)
    function_action(org1, broken.key, res.FUNCTION_ACTION_BUILDING)
    logs = address("logs")
    report_build_failure(org1, broken.key, logs)
    for key in (first.key, second.key):
        failed = get_task(org1, key)
        assert (failed.status, failed.error_type, failed.logs_address) == (res.STATUS_FAILED, res.BUILD_ERROR, logs)
        assert last_reason(org1, key) == f"function {broken.key} failed to build"
    assert status(org1, downstream.key) == res.STATUS_CANCELED
    assert last_reason(org1, downstream.key) == f"parent task {second.key} failed"
    failed_plan = assert_counters_match(org1, plan.key)
    assert (failed_plan.failed_count, failed_plan.canceled_count) == (2, 1)
    assert failed_plan.failed_task_key == first.key


def test_canceled_build_cancels_every_task_of_the_function_for_that_reason(ledger):
    org1 = ledger.org1
    function = make_function(org1, io=CHAIN_IO, ready=False)
    plan = make_plan(org1)
    first = chain_task(plan.key, function)
    second = chain_task(plan.key, function, first.key)
    register(org1, first, second)
    function_action(org1, function.key, res.FUNCTION_ACTION_CANCELED)
    for key in (first.key, second.key):
        assert status(org1, key) == res.STATUS_CANCELED
        assert last_reason(org1, key) == f"build of function {function.key} was canceled"


@pytest.mark.parametrize("build_first", [False, True], ids=["waiting", "building"])
def test_canceling_a_function_cancels_its_waiting_tasks(ledger, build_first):
    org1 = ledger.org1
    function = make_function(org1, io=CHAIN_IO, ready=False)
    ready = make_function(org1, io=CHAIN_IO)
    plan = make_plan(org1)
    root = chain_task(plan.key, function)
    child = chain_task(plan.key, ready, root.key)
    register(org1, root, child)
    if build_first:
        function_action(org1, function.key, res.FUNCTION_ACTION_BUILDING)
    function_action(org1, function.key, res.FUNCTION_ACTION_CANCELED)

    assert status(org1, root.key) == status(org1, child.key) == res.STATUS_CANCELED
    assert last_reason(org1, root.key) == f"build of function {function.key} was canceled"
    assert last_reason(org1, child.key) == f"parent task {root.key} was canceled"
    canceled = assert_counters_match(org1, plan.key)
    assert canceled.status == res.PLAN_STATUS_CANCELED and canceled.canceled_count == 2
    assert not canceled.HasField("cancelation_date") and canceled.HasField("end_date")
    # A task of a canceled function is born CANCELED.
    assert register(org1, chain_task(plan.key, function))[0].status == res.STATUS_CANCELED


def test_a_function_whose_every_task_ended_before_its_build_is_canceled(ledger):
    org1 = ledger.org1
    function = make_function(org1, io=CHAIN_IO, ready=False)
    one, other = make_plan(org1), make_plan(org1)
    first = chain_task(one.key, function)
    second = chain_task(other.key, function)
    register(org1, first)
    register(org1, second)
    org1.CancelComputePlan(api.CancelComputePlanRequest(key=one.key))
    assert function_status(org1, function.key) == res.FUNCTION_STATUS_WAITING  # the other plan still needs it
    act(org1, second.key, res.TASK_ACTION_CANCELED)
    assert function_status(org1, function.key) == res.FUNCTION_STATUS_CANCELED
    updated = [e for e in events_of(org1, function.key, res.ASSET_FUNCTION) if e.event_kind == ev.EVENT_ASSET_UPDATED]
    assert updated[-1].metadata["reason"] == "every task using it ended before its build"
    # Once its build has started the function is built whatever happens to its tasks.
    building = make_function(org1, io=CHAIN_IO, ready=False)
    plan = make_plan(org1)
    task = chain_task(plan.key, building)
    register(org1, task)
    function_action(org1, building.key, res.FUNCTION_ACTION_BUILDING)
    act(org1, task.key, res.TASK_ACTION_CANCELED)
    assert function_status(org1, building.key) == res.FUNCTION_STATUS_BUILDING


# ---------------------------------------------------------------------------------- task actions
def test_task_action_access_matrix(ledger):
    """EXECUTING and DONE by the worker only; CANCELED and FAILED by the owner or the worker."""
    owner, worker, stranger = ledger.org1, ledger.org2, ledger.org3
    function = make_function(owner, io=CHAIN_IO)
    plan = make_plan(owner)
    specs = [chain_task(plan.key, function, worker=ORGS[1]) for _ in range(5)]
    run, by_owner, by_worker, failed_by_owner, failed_by_worker = (s.key for s in specs)
    register(owner, *specs)

    for action in (
        res.TASK_ACTION_EXECUTING,
        res.TASK_ACTION_DONE,
        res.TASK_ACTION_CANCELED,
        res.TASK_ACTION_FAILED,
    ):
        assert call_error(act, stranger, run, action).code == grpc.StatusCode.PERMISSION_DENIED
    for action in (res.TASK_ACTION_EXECUTING, res.TASK_ACTION_DONE):
        assert call_error(act, owner, run, action).code == grpc.StatusCode.PERMISSION_DENIED
    assert status(owner, run) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    assert call_error(act, owner, run, res.TASK_ACTION_UNKNOWN).code == grpc.StatusCode.INVALID_ARGUMENT

    act(worker, run, res.TASK_ACTION_EXECUTING)
    executing = get_task(owner, run)
    assert executing.status == res.STATUS_EXECUTING and executing.HasField("start_date")
    assert call_error(act, owner, run, res.TASK_ACTION_DONE).code == grpc.StatusCode.PERMISSION_DENIED
    act(worker, run, res.TASK_ACTION_DONE)
    done = get_task(owner, run)
    assert done.status == res.STATUS_DONE and done.HasField("end_date") and done.HasField("duration")

    act(owner, by_owner, res.TASK_ACTION_CANCELED)
    worker.ApplyTaskAction(
        api.ApplyTaskActionRequest(
            task_key=by_worker, action=res.TASK_ACTION_CANCELED, reason="Compute plan is not runnable"
        )
    )
    assert status(owner, by_owner) == status(owner, by_worker) == res.STATUS_CANCELED
    act(owner, failed_by_owner, res.TASK_ACTION_FAILED)
    act(worker, failed_by_worker, res.TASK_ACTION_FAILED)
    assert status(owner, failed_by_owner) == status(owner, failed_by_worker) == res.STATUS_FAILED
    assert last_reason(owner, by_owner) == "User action"
    assert last_reason(owner, by_worker) == "Compute plan is not runnable"
    assert_counters_match(owner, plan.key)


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ([], res.TASK_ACTION_DONE),
        ([res.TASK_ACTION_EXECUTING], res.TASK_ACTION_EXECUTING),
        ([res.TASK_ACTION_EXECUTING, res.TASK_ACTION_DONE], res.TASK_ACTION_DONE),
        ([res.TASK_ACTION_EXECUTING, res.TASK_ACTION_DONE], res.TASK_ACTION_CANCELED),
        ([res.TASK_ACTION_EXECUTING, res.TASK_ACTION_DONE], res.TASK_ACTION_FAILED),
        ([res.TASK_ACTION_CANCELED], res.TASK_ACTION_CANCELED),
        ([res.TASK_ACTION_CANCELED], res.TASK_ACTION_EXECUTING),
        ([res.TASK_ACTION_FAILED], res.TASK_ACTION_FAILED),
        ([res.TASK_ACTION_FAILED], res.TASK_ACTION_CANCELED),
    ],
    ids=[
        "slot-done",
        "executing-twice",
        "done-twice",
        "done-canceled",
        "done-failed",
        "canceled-twice",
        "canceled-executing",
        "failed-twice",
        "failed-canceled",
    ],
)
def test_illegal_task_transitions_are_refused(ledger, path, action):
    function = make_function(ledger.org1, io=CHAIN_IO)
    plan = make_plan(ledger.org1)
    task = register(ledger.org1, chain_task(plan.key, function))[0]
    for step in path:
        act(ledger.org1, task.key, step)
    before = status(ledger.org1, task.key)
    error = call_error(act, ledger.org1, task.key, action)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")
    assert status(ledger.org1, task.key) == before
    assert_counters_match(ledger.org1, plan.key)


def test_a_waiting_child_cannot_start(ledger):
    function = make_function(ledger.org1, io=CHAIN_IO)
    plan = make_plan(ledger.org1)
    parent = chain_task(plan.key, function)
    child = chain_task(plan.key, function, parent.key)
    register(ledger.org1, parent, child)
    for action in (res.TASK_ACTION_EXECUTING, res.TASK_ACTION_DONE):
        error = call_error(act, ledger.org1, child.key, action)
        assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")


def test_child_is_released_only_when_all_its_parents_are_done(ledger):
    org1 = ledger.org1
    chain = make_function(org1, io=CHAIN_IO)
    aggregate = make_function(org1, io=AGGREGATE_IO)
    plan = make_plan(org1)
    first, second = chain_task(plan.key, chain), chain_task(plan.key, chain)
    child = task_spec(
        plan.key, aggregate, [parent_input("models", first.key), parent_input("models", second.key)], worker=ORGS[0]
    )
    register(org1, child, first, second)
    assert status(org1, child.key) == res.STATUS_WAITING_FOR_PARENT_TASKS

    act(org1, first.key, res.TASK_ACTION_EXECUTING)
    act(org1, first.key, res.TASK_ACTION_DONE)
    assert status(org1, child.key) == res.STATUS_WAITING_FOR_PARENT_TASKS
    act(org1, second.key, res.TASK_ACTION_EXECUTING)
    assert status(org1, child.key) == res.STATUS_WAITING_FOR_PARENT_TASKS
    act(org1, second.key, res.TASK_ACTION_DONE)
    assert status(org1, child.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    assert last_reason(org1, child.key) == f"last parent task {second.key} done"
    assert_counters_match(org1, plan.key)


def test_parents_finishing_together_release_their_child(ledger):
    """Two workers finish the two parents at the same moment: exactly one of them sees the other
    done and releases the child (serializable transactions, retried)."""
    org1, org2 = ledger.org1, ledger.org2
    chain = make_function(org1, io=CHAIN_IO)
    aggregate = make_function(org1, io=AGGREGATE_IO)
    plan = make_plan(org1)
    pairs = []
    for _ in range(8):
        left, right = chain_task(plan.key, chain), chain_task(plan.key, chain, worker=ORGS[1])
        child = task_spec(
            plan.key, aggregate, [parent_input("models", left.key), parent_input("models", right.key)], worker=ORGS[0]
        )
        register(org1, left, right, child)
        act(org1, left.key, res.TASK_ACTION_EXECUTING)
        act(org2, right.key, res.TASK_ACTION_EXECUTING)
        pairs.append((left.key, right.key, child.key))

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for left, right, child in pairs:
            barrier = threading.Barrier(2)

            def done(stub, key, barrier=barrier):
                barrier.wait()
                act(stub, key, res.TASK_ACTION_DONE)

            list(pool.map(done, (org1, org2), (left, right)))
            assert status(org1, child) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
            released = [
                e for e in events_of(org1, child, res.ASSET_COMPUTE_TASK) if e.event_kind == ev.EVENT_ASSET_UPDATED
            ]
            assert len(released) == 1
    assert_counters_match(org1, plan.key)


def test_task_failure_report_fails_the_plan_and_cancels_descendants(ledger):
    owner, worker = ledger.org1, ledger.org2
    function = make_function(owner, io=CHAIN_IO)
    plan = make_plan(owner)
    root = chain_task(plan.key, function, worker=ORGS[1])
    child = chain_task(plan.key, function, root.key, worker=ORGS[1])
    grandchild = chain_task(plan.key, function, child.key, worker=ORGS[1])
    sibling = chain_task(plan.key, function, worker=ORGS[1])
    register(owner, root, child, grandchild, sibling)

    # Only the worker reports, and only on an executing task.
    error = call_error(report_task_failure, worker, root.key)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TASK_NOT_EXECUTING")
    act(worker, root.key, res.TASK_ACTION_EXECUTING)
    assert call_error(report_task_failure, owner, root.key).code == grpc.StatusCode.PERMISSION_DENIED
    assert call_error(report_task_failure, ledger.org3, root.key).code == grpc.StatusCode.PERMISSION_DENIED
    assert status(owner, root.key) == res.STATUS_EXECUTING

    logs = address("logs")
    report = report_task_failure(worker, root.key, logs=logs)
    assert (report.owner, report.asset_type, report.error_type) == (
        ORGS[1],
        res.FAILED_ASSET_COMPUTE_TASK,
        res.EXECUTION_ERROR,
    )
    failed = get_task(owner, root.key)
    assert failed.status == res.STATUS_FAILED and failed.error_type == res.EXECUTION_ERROR
    assert failed.logs_address == logs and failed.HasField("end_date")
    assert last_reason(owner, root.key) == "failure report registered"
    assert status(owner, child.key) == status(owner, grandchild.key) == res.STATUS_CANCELED
    assert last_reason(owner, child.key) == f"parent task {root.key} failed"
    assert last_reason(owner, grandchild.key) == f"parent task {child.key} was canceled"
    # An unrelated task is left to the workers: the plan no longer runs, so they cancel it.
    assert status(owner, sibling.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT

    failed_plan = assert_counters_match(owner, plan.key)
    assert failed_plan.status == res.PLAN_STATUS_FAILED  # a failure outranks the canceled descendants
    assert failed_plan.failure_date == failed.end_date and failed_plan.failed_task_key == root.key
    assert (failed_plan.failed_count, failed_plan.canceled_count) == (1, 2)

    error = call_error(report_task_failure, worker, root.key)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert owner.GetFailureReport(api.GetFailureReportRequest(asset_key=root.key)).failure_report == report
    # A failed plan takes no more tasks and cannot be canceled.
    error = call_error(register, owner, chain_task(plan.key, function))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PLAN_TERMINATED")
    error = call_error(owner.CancelComputePlan, api.CancelComputePlanRequest(key=plan.key))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PLAN_TERMINATED")
    # The sibling can still be canceled once workers notice.
    act(worker, sibling.key, res.TASK_ACTION_CANCELED)
    finished = assert_counters_match(owner, plan.key)
    assert finished.status == res.PLAN_STATUS_FAILED and finished.HasField("end_date")


def test_failure_report_needs_a_known_asset_and_kind(ledger):
    function = make_function(ledger.org1, io=CHAIN_IO)
    plan = make_plan(ledger.org1)
    task = register(ledger.org1, chain_task(plan.key, function))[0]
    act(ledger.org1, task.key, res.TASK_ACTION_EXECUTING)
    bad_kind = api.RegisterFailureReportRequest(asset_key=task.key, error_type=res.EXECUTION_ERROR)
    assert call_error(ledger.org1.RegisterFailureReport, bad_kind).code == grpc.StatusCode.INVALID_ARGUMENT
    bad_error = api.RegisterFailureReportRequest(asset_key=task.key, asset_type=res.FAILED_ASSET_COMPUTE_TASK)
    assert call_error(ledger.org1.RegisterFailureReport, bad_error).code == grpc.StatusCode.INVALID_ARGUMENT
    # A task key reported as a function is not found, and vice versa.
    assert call_error(report_build_failure, ledger.org1, task.key).code == grpc.StatusCode.NOT_FOUND
    assert call_error(report_task_failure, ledger.org1, function.key).code == grpc.StatusCode.NOT_FOUND
    assert status(ledger.org1, task.key) == res.STATUS_EXECUTING


# ------------------------------------------------------------------------------------ compute plans
def test_cancel_plan_cancels_every_unfinished_task(ledger):
    owner, worker = ledger.org1, ledger.org2
    ready = make_function(owner, io=CHAIN_IO)
    waiting = make_function(owner, io=CHAIN_IO, ready=False)
    plan = make_plan(owner)
    done = chain_task(plan.key, ready, worker=ORGS[1])
    running = chain_task(plan.key, ready, worker=ORGS[1])
    queued = chain_task(plan.key, ready, worker=ORGS[1])
    child = chain_task(plan.key, ready, running.key, worker=ORGS[1])
    unbuilt = chain_task(plan.key, waiting, worker=ORGS[1])
    register(owner, done, running, queued, child, unbuilt)
    act(worker, done.key, res.TASK_ACTION_EXECUTING)
    act(worker, done.key, res.TASK_ACTION_DONE)
    act(worker, running.key, res.TASK_ACTION_EXECUTING)

    # Only the owner cancels, even the worker of its tasks.
    for stranger in (ledger.org2, ledger.org3):
        error = call_error(stranger.CancelComputePlan, api.CancelComputePlanRequest(key=plan.key))
        assert error.code == grpc.StatusCode.PERMISSION_DENIED
    owner.CancelComputePlan(api.CancelComputePlanRequest(key=plan.key))

    assert status(owner, done.key) == res.STATUS_DONE
    for key in (running.key, queued.key, child.key, unbuilt.key):
        assert status(owner, key) == res.STATUS_CANCELED
    assert last_reason(owner, queued.key) == "compute plan canceled"
    canceled = assert_counters_match(owner, plan.key)
    assert canceled.status == res.PLAN_STATUS_CANCELED
    assert (canceled.done_count, canceled.canceled_count) == (1, 4)
    assert canceled.HasField("cancelation_date") and canceled.end_date == canceled.cancelation_date
    assert canceled.estimated_end_date == canceled.end_date and canceled.HasField("duration")

    error = call_error(owner.CancelComputePlan, api.CancelComputePlanRequest(key=plan.key))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PLAN_TERMINATED")
    error = call_error(register, owner, chain_task(plan.key, ready))
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PLAN_TERMINATED")
    # The worker of the task that was running can no longer finish it.
    error = call_error(act, worker, running.key, res.TASK_ACTION_DONE)
    assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")
    assert call_error(owner.CancelComputePlan, api.CancelComputePlanRequest(key=new_key())).code == (
        grpc.StatusCode.NOT_FOUND
    )


def test_cancel_an_empty_plan(ledger):
    plan = make_plan(ledger.org1)
    ledger.org1.CancelComputePlan(api.CancelComputePlanRequest(key=plan.key))
    canceled = get_plan(ledger.org1, plan.key)
    assert canceled.status == res.PLAN_STATUS_CANCELED and canceled.task_count == 0
    assert canceled.end_date == canceled.cancelation_date


def test_counters_follow_every_transition(ledger):
    org1, org2 = ledger.org1, ledger.org2
    ready = make_function(org1, io=CHAIN_IO)
    later = make_function(org1, io=CHAIN_IO, ready=False)
    aggregate = make_function(org1, io=AGGREGATE_IO)
    plan = make_plan(org1)
    a, b = chain_task(plan.key, ready), chain_task(plan.key, ready, worker=ORGS[1])
    c = task_spec(plan.key, aggregate, [parent_input("models", a.key), parent_input("models", b.key)], worker=ORGS[0])
    d = chain_task(plan.key, later, c.key)
    e = chain_task(plan.key, later)
    f = chain_task(plan.key, ready, e.key, worker=ORGS[1])
    g = chain_task(plan.key, ready)
    register(org1, a, b, c, d, e, f, g)
    assert assert_counters_match(org1, plan.key).task_count == 7

    steps = [
        lambda: act(org1, a.key, res.TASK_ACTION_EXECUTING),
        lambda: function_action(org1, later.key, res.FUNCTION_ACTION_BUILDING),
        lambda: act(org1, a.key, res.TASK_ACTION_DONE),
        lambda: act(org2, b.key, res.TASK_ACTION_EXECUTING),
        lambda: function_action(org1, later.key, res.FUNCTION_ACTION_READY),
        lambda: act(org2, b.key, res.TASK_ACTION_DONE),
        lambda: act(org1, c.key, res.TASK_ACTION_EXECUTING),
        lambda: act(org1, e.key, res.TASK_ACTION_CANCELED),
        lambda: register(org1, chain_task(plan.key, ready, a.key)),
        lambda: act(org1, c.key, res.TASK_ACTION_DONE),
        lambda: act(org1, g.key, res.TASK_ACTION_EXECUTING),
        lambda: org1.CancelComputePlan(api.CancelComputePlanRequest(key=plan.key)),
    ]
    for step in steps:
        step()
        assert_counters_match(org1, plan.key)
    final = assert_counters_match(org1, plan.key)
    assert final.task_count == 8 and final.done_count == 3 and final.canceled_count == 5


def test_plan_status_and_dates(ledger):
    org1 = ledger.org1
    function = make_function(org1, io=CHAIN_IO)
    plan = make_plan(org1)
    empty = get_plan(org1, plan.key)
    assert empty.status == res.PLAN_STATUS_CREATED
    assert not (empty.HasField("start_date") or empty.HasField("end_date"))
    assert empty.HasField("duration") and empty.duration == 0  # 0, not null, until it starts (as Substra)
    # The filters see the duration shown: a plan that has not started lasted 0 seconds.
    listed = org1.ListComputePlans(api.ListComputePlansRequest(key=[plan.key], duration_max=0)).compute_plans
    assert [p.key for p in listed] == [plan.key] and listed[0].duration == 0

    first, second = chain_task(plan.key, function), chain_task(plan.key, function)
    register(org1, first, second)
    doing = get_plan(org1, plan.key)
    assert doing.status == res.PLAN_STATUS_DOING and doing.HasField("start_date")
    assert not doing.HasField("end_date") and not doing.HasField("estimated_end_date")
    assert doing.HasField("duration")

    act(org1, first.key, res.TASK_ACTION_EXECUTING)
    act(org1, first.key, res.TASK_ACTION_DONE)
    half = get_plan(org1, plan.key)
    assert half.status == res.PLAN_STATUS_DOING and not half.HasField("end_date")
    # One task done out of two: the estimate lies ahead, about as far as the start lies behind.
    assert when(half.estimated_end_date) >= when(get_task(org1, first.key).end_date)
    assert when(half.estimated_end_date) >= when(half.start_date)

    act(org1, second.key, res.TASK_ACTION_EXECUTING)
    act(org1, second.key, res.TASK_ACTION_DONE)
    done = get_plan(org1, plan.key)
    assert done.status == res.PLAN_STATUS_DONE
    assert done.end_date == get_task(org1, second.key).end_date
    assert done.estimated_end_date == done.end_date
    assert done.duration == int((when(done.end_date) - when(done.start_date)).total_seconds())
    assert done.start_date == doing.start_date

    # A task added to a done plan reopens it.
    third = chain_task(plan.key, function)
    register(org1, third)
    reopened = get_plan(org1, plan.key)
    assert reopened.status == res.PLAN_STATUS_DOING and not reopened.HasField("end_date")
    assert reopened.start_date == doing.start_date
    act(org1, third.key, res.TASK_ACTION_CANCELED)
    canceled = get_plan(org1, plan.key)
    # A canceled task (without any failure) makes the plan CANCELED, though it was not canceled itself.
    assert canceled.status == res.PLAN_STATUS_CANCELED and not canceled.HasField("cancelation_date")
    assert canceled.end_date == get_task(org1, third.key).end_date

    events = events_of(org1, plan.key, res.ASSET_COMPUTE_PLAN)
    assert events[0].event_kind == ev.EVENT_ASSET_CREATED
    statuses = [(e.compute_plan.status, e.metadata["reason"]) for e in events[1:]]
    assert statuses == [
        (res.PLAN_STATUS_DOING, "status PLAN_STATUS_DOING"),
        (res.PLAN_STATUS_DONE, "status PLAN_STATUS_DONE"),
        (res.PLAN_STATUS_DOING, "status PLAN_STATUS_DOING"),
        (res.PLAN_STATUS_CANCELED, "status PLAN_STATUS_CANCELED"),
    ]
    assert all(e.event_kind == ev.EVENT_ASSET_UPDATED for e in events[1:])
    changes = [(e.status_change.previous, e.status_change.current) for e in events[1:]]
    assert changes == [
        (res.PLAN_STATUS_CREATED, res.PLAN_STATUS_DOING),
        (res.PLAN_STATUS_DOING, res.PLAN_STATUS_DONE),
        (res.PLAN_STATUS_DONE, res.PLAN_STATUS_DOING),
        (res.PLAN_STATUS_DOING, res.PLAN_STATUS_CANCELED),
    ]


def test_plan_cancel_events(ledger):
    org1 = ledger.org1
    function = make_function(org1, io=CHAIN_IO)
    plan = make_plan(org1)
    task = register(org1, chain_task(plan.key, function))[0]
    org1.CancelComputePlan(api.CancelComputePlanRequest(key=plan.key))
    events = events_of(org1, plan.key, res.ASSET_COMPUTE_PLAN)
    reasons = [e.metadata.get("reason", "") for e in events]
    assert reasons == ["", "status PLAN_STATUS_DOING", "plan canceled", "status PLAN_STATUS_CANCELED"]
    assert events[-1].compute_plan.status == res.PLAN_STATUS_CANCELED
    assert events[-1].compute_plan.HasField("cancelation_date")
    task_events = events_of(org1, task.key, res.ASSET_COMPUTE_TASK)
    assert task_events[-1].compute_task.status == res.STATUS_CANCELED
    # Within the call, the task event comes before the plan's new status.
    assert task_events[-1].position < events[-1].position


def test_plan_status_precedence_failure_over_cancel(ledger):
    """A failed task outranks canceled ones, whichever came first."""
    org1 = ledger.org1
    function = make_function(org1, io=CHAIN_IO)
    plan = make_plan(org1)
    canceled, failed = chain_task(plan.key, function), chain_task(plan.key, function)
    register(org1, canceled, failed)
    act(org1, canceled.key, res.TASK_ACTION_CANCELED)
    assert get_plan(org1, plan.key).status == res.PLAN_STATUS_CANCELED
    act(org1, failed.key, res.TASK_ACTION_FAILED)
    after = get_plan(org1, plan.key)
    assert after.status == res.PLAN_STATUS_FAILED and after.failed_task_key == failed.key
    assert after.HasField("failure_date") and after.HasField("end_date")


# ------------------------------------------------------------------------------------- long chains
CHAIN_LENGTH = 300


def long_chain(stub, n: int = CHAIN_LENGTH):
    function = make_function(stub, io=CHAIN_IO)
    plan = make_plan(stub)
    specs = []
    for _ in range(n):
        specs.append(chain_task(plan.key, function, specs[-1].key if specs else ""))
    created = register(stub, *reversed(specs))  # children first: the ledger sorts the batch
    assert sorted(t.rank for t in created) == list(range(n))
    return plan, [s.key for s in specs]


def test_long_chain_runs_to_completion(ledger):
    org1 = ledger.org1
    plan, keys = long_chain(org1)
    for i, key in enumerate(keys):
        assert status(org1, key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
        act(org1, key, res.TASK_ACTION_EXECUTING)
        act(org1, key, res.TASK_ACTION_DONE)
        if i + 1 < len(keys):
            assert status(org1, keys[i + 1]) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    done = assert_counters_match(org1, plan.key)
    assert done.status == res.PLAN_STATUS_DONE and done.done_count == CHAIN_LENGTH


def test_canceling_the_root_of_a_long_chain_cancels_it_whole(ledger):
    org1 = ledger.org1
    plan, keys = long_chain(org1)
    act(org1, keys[0], res.TASK_ACTION_CANCELED)
    listed = org1.ListTasks(
        api.ListTasksRequest(compute_plan_key=[plan.key], status=[res.STATUS_CANCELED], page_size=1000)
    )
    assert listed.total_size == CHAIN_LENGTH
    canceled = assert_counters_match(org1, plan.key)
    assert canceled.status == res.PLAN_STATUS_CANCELED and canceled.canceled_count == CHAIN_LENGTH
    assert last_reason(org1, keys[-1]) == f"parent task {keys[-2]} was canceled"


def test_failing_the_root_of_a_long_chain_fails_the_plan_at_once(ledger):
    org1 = ledger.org1
    plan, keys = long_chain(org1)
    act(org1, keys[0], res.TASK_ACTION_EXECUTING)
    report_task_failure(org1, keys[0])
    failed = assert_counters_match(org1, plan.key)
    assert failed.status == res.PLAN_STATUS_FAILED
    assert (failed.failed_count, failed.canceled_count) == (1, CHAIN_LENGTH - 1)
    assert failed.HasField("end_date")
