"""A worker's two calls: StartTask and CompleteTask, each one transaction."""

from __future__ import annotations

import grpc
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res

from tests.integration.ledger.conftest import ORGS, act, call_error, make_function, make_plan, new_key, status
from tests.integration.ledger.test_outputs import (
    SCORED_IO,
    events_after,
    head,
    new_model,
    output_assets,
    register,
    register_models,
    spec,
    steps_of,
)


def _start(stub, key: str) -> api.StartTaskResponse:
    return stub.StartTask(api.StartTaskRequest(task_key=key))


def _completion(task_key: str, model_key: str = "", performance: float | None = 0.5) -> api.CompleteTaskRequest:
    request = api.CompleteTaskRequest(task_key=task_key)
    request.models.append(new_model(task_key, key=model_key or new_key()))
    if performance is not None:
        request.performances.append(
            api.TaskPerformance(compute_task_output_identifier="performance", performance_value=performance)
        )
    request.profiling_steps.extend(
        [
            api.TaskProfilingStep(step="task_execution", duration=2000),
            api.TaskProfilingStep(step="save_outputs", duration=30),
        ]
    )
    return request


def _chain(ledger, n: int = 2) -> list[res.ComputeTask]:
    """``n`` scored tasks run by org2, each consuming the previous one's model."""
    function = make_function(ledger.org1, io=SCORED_IO)
    plan = make_plan(ledger.org1)
    tasks, parent = [], ""
    for _ in range(n):
        (task,) = register(ledger.org1, spec(plan.key, function, parent))
        tasks.append(task)
        parent = task.key
    return tasks


def test_start_makes_a_ready_task_executing_and_hands_over_its_inputs(ledger):
    first, second = _chain(ledger)
    started = _start(ledger.org2, first.key)
    assert started.started and started.task.status == res.STATUS_EXECUTING
    assert list(started.registered_outputs) == []
    assert status(ledger.org1, first.key) == res.STATUS_EXECUTING
    # The child is not ready: its parent is not done.
    assert call_error(_start, ledger.org2, second.key).code == grpc.StatusCode.FAILED_PRECONDITION


def test_a_restart_stays_executing_and_learns_what_the_first_attempt_registered(ledger):
    (task, _) = _chain(ledger)
    _start(ledger.org2, task.key)
    register_models(ledger.org2, new_model(task.key))
    again = _start(ledger.org2, task.key)
    assert again.started and again.task.status == res.STATUS_EXECUTING
    assert list(again.registered_outputs) == ["model"]


def test_only_the_worker_starts_and_completes(ledger):
    (task, _) = _chain(ledger)
    assert call_error(_start, ledger.org1, task.key).code == grpc.StatusCode.PERMISSION_DENIED
    _start(ledger.org2, task.key)
    assert call_error(ledger.org1.CompleteTask, _completion(task.key)).code == grpc.StatusCode.PERMISSION_DENIED
    assert status(ledger.org1, task.key) == res.STATUS_EXECUTING


def test_a_task_of_a_canceled_plan_cannot_start(ledger):
    (task, _) = _chain(ledger)
    # Cancel the plan while the first task waits: the ledger cancels its tasks; a start then refuses.
    ledger.org1.CancelComputePlan(api.CancelComputePlanRequest(key=task.compute_plan_key))
    assert call_error(_start, ledger.org2, task.key).code == grpc.StatusCode.FAILED_PRECONDITION
    assert status(ledger.org1, task.key) == res.STATUS_CANCELED


def test_a_ready_task_of_a_failed_plan_is_canceled_instead_of_started(ledger):
    function = make_function(ledger.org1, io=SCORED_IO)
    plan = make_plan(ledger.org1)
    failing, independent = (register(ledger.org1, spec(plan.key, function))[0] for _ in range(2))
    _start(ledger.org2, failing.key)
    act(ledger.org2, failing.key, res.TASK_ACTION_FAILED)
    assert status(ledger.org1, independent.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    started = _start(ledger.org2, independent.key)
    assert not started.started and started.task.status == res.STATUS_CANCELED
    assert list(started.input_assets) == []


def test_complete_registers_everything_and_ends_the_task_in_one_transaction(ledger):
    first, second = _chain(ledger)
    _start(ledger.org2, first.key)
    before = head(ledger.org1)
    model_key = new_key()
    done = ledger.org2.CompleteTask(_completion(first.key, model_key, 0.75)).task
    assert done.status == res.STATUS_DONE
    assets = output_assets(ledger.org1, first.key).assets
    assert {(a.identifier, a.kind) for a in assets} == {
        ("model", res.ASSET_MODEL),
        ("performance", res.ASSET_PERFORMANCE),
    }
    assert next(a for a in assets if a.identifier == "model").model.key == model_key
    assert next(a for a in assets if a.identifier == "performance").performance.performance_value == 0.75
    assert sorted(steps_of(ledger.org2, first.key)) == [("save_outputs", 30), ("task_execution", 2000)]
    assert status(ledger.org1, second.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    events = events_after(ledger.org1, before)
    kinds = {e.asset_kind for e in events}
    assert res.ASSET_PROFILING_STEP not in kinds  # a task's steps are its worker's, not broadcast
    assert {res.ASSET_MODEL, res.ASSET_PERFORMANCE, res.ASSET_COMPUTE_TASK} <= kinds


def test_a_refused_completion_registers_nothing(ledger):
    (task, _) = _chain(ledger)
    _start(ledger.org2, task.key)
    bad = _completion(task.key)
    bad.performances[0].compute_task_output_identifier = "model"  # not a performance output
    assert call_error(ledger.org2.CompleteTask, bad).code == grpc.StatusCode.INVALID_ARGUMENT
    assert list(output_assets(ledger.org1, task.key).assets) == []
    assert steps_of(ledger.org2, task.key) == []
    assert status(ledger.org1, task.key) == res.STATUS_EXECUTING
    other = _completion(task.key)
    other.models[0].compute_task_key = new_key()
    assert call_error(ledger.org2.CompleteTask, other).code == grpc.StatusCode.INVALID_ARGUMENT
    ledger.org2.CompleteTask(_completion(task.key))  # the right one still goes through
    assert status(ledger.org1, task.key) == res.STATUS_DONE
    assert call_error(ledger.org2.CompleteTask, _completion(task.key)).code == grpc.StatusCode.FAILED_PRECONDITION


def test_a_task_already_done_cannot_start_again(ledger):
    (task, _) = _chain(ledger)
    _start(ledger.org2, task.key)
    ledger.org2.CompleteTask(_completion(task.key))
    assert call_error(_start, ledger.org2, task.key).code == grpc.StatusCode.FAILED_PRECONDITION


def _fork(ledger, workers=(ORGS[1], ORGS[1], ORGS[1])) -> list[res.ComputeTask]:
    """A root and two children consuming its model, each run by the given worker."""
    function = make_function(ledger.org1, io=SCORED_IO)
    plan = make_plan(ledger.org1)
    (root,) = register(ledger.org1, spec(plan.key, function, worker=workers[0]))
    children = register(
        ledger.org1,
        spec(plan.key, function, root.key, worker=workers[1]),
        spec(plan.key, function, root.key, worker=workers[2]),
    )
    return [root, *children]


def test_a_completion_starts_as_many_ready_tasks_as_the_worker_asks_and_lists_the_others(ledger):
    root, left, right = _fork(ledger)
    _start(ledger.org2, root.key)
    request = _completion(root.key)
    request.start_ready = 1
    answer = ledger.org2.CompleteTask(request)
    assert answer.task.status == res.STATUS_DONE
    (started,) = answer.started
    (waiting,) = answer.ready
    assert {started.task.key, waiting.key} == {left.key, right.key}
    # The started one is as StartTask answers: EXECUTING, with its function and its resolved inputs.
    assert started.started and started.task.status == res.STATUS_EXECUTING and started.task.function.key
    assert [a.model.compute_task_key for a in started.input_assets] == [root.key]
    assert list(started.registered_outputs) == []
    assert status(ledger.org1, started.task.key) == res.STATUS_EXECUTING
    assert status(ledger.org1, waiting.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
    # It is started for good: StartTask now restarts it, and a second worker call cannot start it twice.
    again = _start(ledger.org2, started.task.key)
    assert again.started and again.task.status == res.STATUS_EXECUTING
    assert again.task.start_date == started.task.start_date


def test_a_completion_starts_nothing_unless_asked_and_never_another_workers_task(ledger):
    root, left, right = _fork(ledger)
    _start(ledger.org2, root.key)
    answer = ledger.org2.CompleteTask(_completion(root.key))
    assert list(answer.started) == [] and {t.key for t in answer.ready} == {left.key, right.key}

    root, mine, theirs = _fork(ledger, (ORGS[1], ORGS[1], ORGS[2]))
    _start(ledger.org2, root.key)
    request = _completion(root.key)
    request.start_ready = 5
    answer = ledger.org2.CompleteTask(request)
    assert [s.task.key for s in answer.started] == [mine.key] and list(answer.ready) == []
    assert status(ledger.org1, theirs.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT


def test_a_negative_start_ready_is_refused_and_completes_nothing(ledger):
    root, left, _ = _fork(ledger)
    _start(ledger.org2, root.key)
    request = _completion(root.key)
    request.start_ready = -1
    error = call_error(ledger.org2.CompleteTask, request)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT and "start_ready" in [v.field for v in error.violations]
    assert status(ledger.org1, root.key) == res.STATUS_EXECUTING
    assert status(ledger.org1, left.key) == res.STATUS_WAITING_FOR_PARENT_TASKS


def test_transitions_of_one_plan_queued_together_commit_together_and_a_refused_one_fails_alone(ledger):
    """Starts of one plan arriving at once wait for the plan's turn; those queued behind one transaction commit in
    the next, together (one timestamp), and the one the rules refuse gets its error without stopping the others."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    function = make_function(ledger.org1, io=SCORED_IO)
    plan = make_plan(ledger.org1)
    workers = [ORGS[1], ORGS[2]] * 4
    roots = register(ledger.org1, *(spec(plan.key, function, worker=w) for w in workers))
    stubs = {ORGS[1]: ledger.org2, ORGS[2]: ledger.org3}
    calls = [(stubs[task.worker], task.key) for task in roots]
    calls.append((ledger.org2, next(t.key for t in roots if t.worker == ORGS[2])))  # not org2's: refused
    together = threading.Barrier(len(calls))
    before = head(ledger.org1)

    def start(stub, key):
        together.wait()
        try:
            return _start(stub, key)
        except grpc.RpcError as exc:
            return exc.code()

    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(lambda call: start(*call), calls))
    assert answers[-1] == grpc.StatusCode.PERMISSION_DENIED
    started = answers[:-1]
    assert all(a.started and a.task.status == res.STATUS_EXECUTING for a in started)
    assert all(status(ledger.org1, task.key) == res.STATUS_EXECUTING for task in roots)
    executing = [
        e.asset_key
        for e in events_after(ledger.org1, before)
        if e.asset_key in {t.key for t in roots} and e.status_change.current == res.STATUS_EXECUTING
    ]
    assert sorted(executing) == sorted(t.key for t in roots)  # one event each
    stamps = [a.task.start_date.ToDatetime() for a in started]
    assert len(set(stamps)) < len(stamps)  # some started in one transaction
