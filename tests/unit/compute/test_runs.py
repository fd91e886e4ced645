"""Running one task: what the ledger's StartTask answer means, how a run's end is reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res

from services.compute.domain import runs
from services.compute.domain.builds import FunctionCode
from services.compute.domain.errors import BuildError, UserError
from services.compute.domain.execution import ExecutionResult, TaskInput
from services.compute.domain.runs import Logs
from services.kit import errors


@pytest.mark.parametrize(
    ("error", "error_type", "logs"),
    [
        (UserError("exited with status 1"), res.EXECUTION_ERROR, Logs.TASK),
        (BuildError("no Dockerfile"), res.EXECUTION_ERROR, Logs.BUILD),
        (errors.FailedPrecondition("checksum mismatch"), res.INTERNAL_ERROR, Logs.NONE),
        (errors.NotFound("no such file"), res.INTERNAL_ERROR, Logs.NONE),
        (errors.DomainError("INTERNAL"), res.INTERNAL_ERROR, Logs.NONE),
        (RuntimeError("a bug of ours"), res.INTERNAL_ERROR, Logs.NONE),
    ],
)
def test_a_failure_is_reported_with_its_error_type_and_logs(error, error_type, logs):
    failure = runs.failure_of(error)
    assert (failure.error_type, failure.logs) == (error_type, logs)
    report = failure.report("task-1")
    assert report.asset_key == "task-1"
    assert report.asset_type == res.FAILED_ASSET_COMPUTE_TASK
    assert report.error_type == error_type
    assert not report.HasField("logs_address")


@pytest.mark.parametrize("error", [errors.Unavailable("ledger away"), errors.Aborted("contention")])
def test_an_outage_is_not_reported_the_work_is_redelivered(error):
    assert runs.failure_of(error) is None


def test_internal_errors_never_carry_logs():
    internal = [runs.failure_of(e) for e in (ValueError(), errors.PermissionDenied("x"), errors.DataLoss("x"))]
    assert {f.logs for f in internal} == {Logs.NONE}


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (errors.FailedPrecondition("already DONE"), True),
        (errors.AlreadyExists("already started"), True),
        (errors.PermissionDenied("not this worker's"), True),
        (errors.NotFound("no such task"), True),
        (errors.Unavailable("ledger away"), False),
        (errors.Aborted("contention"), False),
        (errors.InvalidArgument("bad key"), False),
        (RuntimeError(), False),
    ],
)
def test_which_start_refusals_mean_skip_the_work(error, refused):
    assert runs.start_refused(error) is refused


def test_a_task_the_ledger_canceled_instead_of_starting_is_skipped():
    assert runs.skip_reason(api.StartTaskResponse(started=False)) == "plan-not-runnable"
    assert runs.skip_reason(api.StartTaskResponse(started=True)) == ""


def test_an_execution_s_end_decides_success_or_the_user_s_failure():
    assert runs.execution_failure(ExecutionResult(0)) is None
    failed = runs.execution_failure(ExecutionResult(1, error="Traceback: boom"))
    assert isinstance(failed, UserError) and str(failed) == "Traceback: boom"
    assert str(runs.execution_failure(ExecutionResult(3))) == "exited with status 3"
    timed_out = runs.execution_failure(ExecutionResult(0, timed_out=True, error="timed out after 5 s"))
    assert str(timed_out) == "timed out after 5 s"


def test_the_task_spec_carries_the_task_its_code_and_its_inputs():
    task = res.ComputeTask(key="t", compute_plan_key="p", function_key="f", rank=3)
    task.outputs["model"].CopyFrom(res.ComputeTaskOutput())
    task.outputs["perf"].CopyFrom(res.ComputeTaskOutput())
    task.function.outputs["perf"].kind = res.ASSET_PERFORMANCE
    task.function.outputs["model"].kind = res.ASSET_MODEL
    code = FunctionCode(Path("/code"), ["python3", "f.py"], "/venv/bin/python")
    inputs = [TaskInput("opener", Path("/cache/opener"))]
    spec = runs.task_spec(task, code, inputs, timeout=12.5)
    assert (spec.key, spec.plan_key, spec.function_key, spec.rank, spec.timeout) == ("t", "p", "f", 3, 12.5)
    assert (spec.code, spec.python, spec.entrypoint) == (Path("/code"), "/venv/bin/python", ["python3", "f.py"])
    assert spec.inputs == inputs
    assert spec.outputs == {"model": "model.model", "perf": "perf-perf.json"}


DURATIONS = {"save_outputs": 4, "download_function": 1, "task_execution": 3, "prepare_inputs": 2}


def _task(function_owner: str) -> res.ComputeTask:
    task = res.ComputeTask(key="t", worker="MyOrg2MSP")
    task.function.owner = function_owner
    return task


def test_a_task_has_substra_s_three_steps_in_substra_s_order():
    completion = runs.profiling(api.CompleteTaskRequest(task_key="t"), dict(DURATIONS), _task("MyOrg2MSP"))
    assert [(s.step, s.duration) for s in completion.profiling_steps] == [
        ("prepare_inputs", 2),
        ("task_execution", 3),
        ("save_outputs", 4),
    ]


def test_a_function_fetched_from_its_owner_adds_its_download_as_substra_does():
    completion = runs.profiling(api.CompleteTaskRequest(task_key="t"), dict(DURATIONS), _task("MyOrg1MSP"))
    assert [s.step for s in completion.profiling_steps] == [
        "prepare_inputs",
        "download_function",
        "task_execution",
        "save_outputs",
    ]


def test_the_failure_note_says_why():
    assert "the task failed: out of memory" in runs.failure_note("out of memory")
