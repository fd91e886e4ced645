"""Running one task: what the ledger's StartTask answer means, and how the run's end is reported.

A run ends one of three ways: a completion (outputs, profiling and DONE in one ledger write), a
failure report, or nothing at all (canceled, or an outage: the work message is redelivered and the
task restarted). Failures of the user's code (its exit status, a missing or malformed output, a
disabled input, a function that cannot be prepared) are EXECUTION_ERRORs with the logs kept;
compute's own failures are INTERNAL_ERRORs without logs (they may show internals).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import resources_pb2 as res

from services.compute.domain.builds import FunctionCode
from services.compute.domain.errors import TRANSIENT, BuildError, UserError
from services.compute.domain.execution import ExecutionResult, TaskInput, TaskSpec
from services.compute.domain.outputs import output_files
from services.kit.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied

STEPS = ("prepare_inputs", "download_function", "task_execution", "save_outputs")
"""A run's timed steps, named and listed as Substra names and lists them (each one's duration is a
profiling step). Substra's three task steps are always there; ``download_function`` only for a
function another organization owns, whose code is fetched from it (Substra's image download)."""

DOWNLOAD = "download_function"

QUEUED = "queued"
"""A run's step until the ledger has started it."""

REFUSED_STARTS = (FailedPrecondition, AlreadyExists, PermissionDenied, NotFound)
"""The ledger refusing StartTask: the task is not this worker's, not runnable or already final. Skipped."""


@dataclass
class Run:
    """A task this worker has claimed: what GetStatus shows and the reconciler weighs."""

    key: str
    channel: str
    started: dt.datetime  # wall clock, shown to operators
    claimed: float  # monotonic clock, compared with the reconciler's listings
    plan_key: str = ""
    function_key: str = ""
    step: str = QUEUED
    canceled: bool = False


def start_refused(error: Exception) -> bool:
    """Whether the ledger's answer to StartTask means that this work is not to be done (skipped)."""
    return isinstance(error, REFUSED_STARTS)


def skip_reason(start: api.StartTaskResponse) -> str:
    """Why a started task is not run ("" when it is): the ledger canceled it because its plan cannot run."""
    return "" if start.started else "plan-not-runnable"


def task_spec(task: res.ComputeTask, code: FunctionCode, inputs: list[TaskInput], timeout: float) -> TaskSpec:
    """What the executor runs for ``task``."""
    return TaskSpec(
        key=task.key,
        plan_key=task.compute_plan_key,
        function_key=task.function_key,
        code=code.directory,
        python=code.python,
        entrypoint=code.entrypoint,
        inputs=inputs,
        outputs=output_files(task),
        rank=task.rank,
        timeout=timeout,
        env=code.env,
        workdir=code.workdir,
        image_workdir=code.image_workdir,
    )


def runner_spec(plan_key: str, function: res.Function, code: FunctionCode) -> TaskSpec:
    """What a runner of ``function`` for the plan is made from, before any task of it: no task, no inputs."""
    return task_spec(res.ComputeTask(compute_plan_key=plan_key, function_key=function.key), code, [], 0.0)


def execution_failure(result: ExecutionResult) -> UserError | None:
    """Why an execution that was not canceled failed its task, or None when it succeeded."""
    if result.succeeded:
        return None
    return UserError(result.error or f"exited with status {result.exit_code}")


class Logs(enum.Enum):
    """Which log a failure report carries."""

    NONE = "none"
    TASK = "task"  # the task's own output, with why it failed appended
    BUILD = "build"  # the function's build log


@dataclass(frozen=True)
class Failure:
    """How a failed run is reported to the ledger."""

    error_type: int  # res.ErrorType
    logs: Logs

    def report(self, task_key: str) -> api.RegisterFailureReportRequest:
        """The failure report (its logs address is added once they are stored)."""
        return api.RegisterFailureReportRequest(
            asset_key=task_key, asset_type=res.FAILED_ASSET_COMPUTE_TASK, error_type=self.error_type
        )


def failure_of(error: Exception) -> Failure | None:
    """How ``error``, raised while running a task, is reported; None: not at all, the work is redelivered."""
    if isinstance(error, BuildError):
        return Failure(res.EXECUTION_ERROR, Logs.BUILD)
    if isinstance(error, UserError):
        return Failure(res.EXECUTION_ERROR, Logs.TASK)
    if isinstance(error, TRANSIENT):
        return None
    return Failure(res.INTERNAL_ERROR, Logs.NONE)


def failure_note(reason: str) -> str:
    """The line appended to a task's log to say why it failed."""
    return f"\n[tessera] the task failed: {reason}\n"


def profiling(
    completion: api.CompleteTaskRequest, durations: dict[str, int], task: res.ComputeTask
) -> api.CompleteTaskRequest:
    """``completion`` with each step's duration (microseconds) as a profiling step, in step order; the
    function's download only when another organization owns the function."""
    peers = task.function.owner != task.worker
    completion.profiling_steps.extend(
        api.TaskProfilingStep(step=step, duration=durations[step])
        for step in STEPS
        if step in durations and (step != DOWNLOAD or peers)
    )
    return completion
