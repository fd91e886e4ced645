"""What a worker does to a task, each in one transaction: start it, complete it.

A task used to cost its worker ten ledger calls (read the task, read its plan, EXECUTING, read its
inputs, read its outputs, register its models, register each performance and profiling step, DONE);
each write was a transaction and each step an event. Here the start is one transaction and the end is
one: the outputs, the profiling and DONE commit together or not at all, so a crash between them
leaves nothing half-registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import outputs, plans, tasks
from services.asset.domain.common import Context, Violations, validate_key
from services.kit.errors import FailedPrecondition, InvalidArgument, PermissionDenied

NOT_RUNNABLE = "compute plan is not runnable"


@dataclass
class TaskPerformance:
    """The value of one performance output."""

    compute_task_output_identifier: str
    performance_value: float


@dataclass
class TaskStep:
    """How long one step of a task's execution took, in microseconds."""

    step: str
    duration: int


@dataclass
class Completion:
    """Everything an executing task produced, registered with its DONE in one unit of work."""

    task_key: str
    models: list[outputs.NewModel] = field(default_factory=list)
    performances: list[TaskPerformance] = field(default_factory=list)
    profiling_steps: list[TaskStep] = field(default_factory=list)


@dataclass
class Started:
    """The answer to a start."""

    task: res.ComputeTask
    started: bool
    inputs: list[res.ComputeTaskInputAsset]
    registered: list[str]


@dataclass
class Completed:
    """The answer to a completion: the task, DONE; the tasks of the same worker its DONE made ready and that
    the same transaction started (as many as the worker asked for); and those it made ready and left
    WAITING_FOR_EXECUTOR_SLOT, which the worker may start at once rather than wait for their events."""

    task: res.ComputeTask
    ready: list[res.ComputeTask]
    started: list[Started] = field(default_factory=list)


def start_task(ctx: Context, key: str) -> Started:
    """WAITING_FOR_EXECUTOR_SLOT → EXECUTING (EXECUTING stays: a restart), with what the run needs."""
    task = tasks.get_task(ctx, validate_key("task_key", key))
    if task.worker != ctx.org:
        raise PermissionDenied(f"only the worker {task.worker} may start task {task.key}")
    plan = plans.get_plan(ctx, task.compute_plan_key, for_update=True)  # locked by the transition anyway
    if task.status in tasks.NON_FINAL and (plan.HasField("cancelation_date") or plan.HasField("failure_date")):
        tasks.move(ctx, task, res.STATUS_CANCELED, NOT_RUNNABLE)
        return Started(tasks.get_task(ctx, task.key), False, [], [])
    registered: list[str] = []  # a task registers outputs only while EXECUTING: a first start finds none
    if task.status == res.STATUS_WAITING_FOR_EXECUTOR_SLOT:
        tasks.move(ctx, task, res.STATUS_EXECUTING, "started by its worker")  # updates ``task`` too
    elif task.status == res.STATUS_EXECUTING:
        registered = [
            identifier
            for identifier in sorted(task.outputs)
            if ctx.store.models_of_output(task.key, identifier)
            or ctx.store.get_performance(task.key, identifier) is not None
        ]
    else:
        raise FailedPrecondition(
            f"task {task.key} is {tasks.status_name(task.status)}: it cannot start", reason="TASK_NOT_RUNNABLE"
        )
    return Started(task, True, tasks.input_assets_of(ctx, task), registered)


def complete_task(ctx: Context, done: Completion, start_ready: int = 0) -> Completed:
    """The task's models, performances and profiling steps, then DONE and its cascades; then up to
    ``start_ready`` of the caller's tasks this DONE made ready are started as :func:`start_task` starts
    them (a worker with free slots saves a call per task, and the ready task's wait for it)."""
    if start_ready < 0:
        raise InvalidArgument.on("start_ready", "must not be negative")
    task = outputs.executing_task_of_worker(ctx, done.task_key, "task_key")
    v = Violations()
    for i, model in enumerate(done.models):
        if model.compute_task_key.lower() != task.key:
            v.add(f"models[{i}].compute_task_key", f"must be the completed task {task.key}")
    for i, step in enumerate(done.profiling_steps):
        v.name(f"profiling_steps[{i}].step", step.step)
        if step.duration < 0:
            v.add(f"profiling_steps[{i}].duration", "must not be negative")
    v.raise_if_any()
    if done.models:
        outputs.register_models(ctx, list(done.models))
    for i, performance in enumerate(done.performances):
        if not performance.compute_task_output_identifier:
            raise InvalidArgument.on(f"performances[{i}].compute_task_output_identifier", "is required")
        outputs.register_performance(
            ctx, task.key, performance.compute_task_output_identifier, performance.performance_value
        )
    outputs.record_task_steps(ctx, task, [(step.step, step.duration) for step in done.profiling_steps])
    tasks.move(ctx, task, res.STATUS_DONE, "completed by its worker")
    ready = [
        event.compute_task
        for event in ctx.events
        if event.WhichOneof("asset") == "compute_task"
        and event.status_change.current == res.STATUS_WAITING_FOR_EXECUTOR_SLOT
        and event.compute_task.worker == ctx.org
    ]
    started = [start_task(ctx, ready_task.key) for ready_task in ready[:start_ready]]
    return Completed(task, ready[start_ready:], started)  # ``task`` is DONE: the move updated it
