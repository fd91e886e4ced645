"""What tasks produce and report: models, performances, failure reports, profiling steps, the
output-asset links, transient outputs (domain §1.9-1.13, §2.5), and the permission checks
storage asks for (§1.15)."""

from __future__ import annotations

from dataclasses import dataclass

from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import functions, tasks
from services.asset.domain.common import Context, Violations, allows, get_one, timestamp, validate_key
from services.kit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied


@dataclass
class NewModel:
    """A model a worker registers under an output of its executing task (the file already in its storage)."""

    key: str
    compute_task_key: str
    compute_task_output_identifier: str
    address: res.Addressable


def executing_task_of_worker(ctx: Context, key: str, path: str) -> res.ComputeTask:
    task = tasks.get_task(ctx, validate_key(path, key))
    if task.worker != ctx.org:
        raise PermissionDenied(f"only the worker {task.worker} may register outputs of task {task.key}")
    if task.status != res.STATUS_EXECUTING:
        raise FailedPrecondition(
            f"task {task.key} is {tasks.status_name(task.status)}, not STATUS_EXECUTING", reason="TASK_NOT_EXECUTING"
        )
    return task


def _link(task_key: str, identifier: str, kind: int, asset_key: str) -> res.ComputeTaskOutputAsset:
    return res.ComputeTaskOutputAsset(
        compute_task_key=task_key, compute_task_output_identifier=identifier, asset_kind=kind, asset_key=asset_key
    )


def _emit_link(ctx: Context, link: res.ComputeTaskOutputAsset) -> None:
    key = f"{link.compute_task_key}|{link.compute_task_output_identifier}"
    ctx.emit(res.ASSET_COMPUTE_TASK_OUTPUT_ASSET, key, ev.EVENT_ASSET_CREATED, link)


def register_models(ctx: Context, new_models: list[NewModel]) -> list[res.Model]:
    """Register models produced by one executing task (worker only)."""
    if not new_models:
        raise InvalidArgument.on("models", "at least one model is required")
    v = Violations()
    keys = [v.key(f"models[{i}].key", m.key) for i, m in enumerate(new_models)]
    for i, model in enumerate(new_models):
        v.addressable(f"models[{i}].address", model.address)
    if len({m.compute_task_key.lower() for m in new_models}) != 1:
        v.add("models", "all models of a call must belong to the same task")
    if len(set(keys)) != len(keys):
        v.add("models", "keys must be unique")
    v.raise_if_any()
    task = executing_task_of_worker(ctx, new_models[0].compute_task_key, "models[0].compute_task_key")
    existing = ctx.store.get_models(keys)
    if existing:
        raise AlreadyExists("models already exist", metadata={"keys": ",".join(sorted(existing))})
    per_output: dict[str, int] = {}
    for i, model in enumerate(new_models):
        identifier = model.compute_task_output_identifier
        spec = task.function.outputs.get(identifier)
        if spec is None or identifier not in task.outputs:
            v.add(f"models[{i}].compute_task_output_identifier", f"{identifier!r} is not an output of task {task.key}")
        elif spec.kind != res.ASSET_MODEL:
            v.add(f"models[{i}].compute_task_output_identifier", f"{identifier!r} is not a model output")
        per_output[identifier] = per_output.get(identifier, 0) + 1
    v.raise_if_any()
    singles = [identifier for identifier in per_output if not task.function.outputs[identifier].multiple]
    if singles:  # one query for every output that takes a single model
        had = ctx.store.models_of_outputs((task.key, identifier) for identifier in singles)
        for identifier in singles:
            if per_output[identifier] + len(had[(task.key, identifier)]) > 1:
                raise AlreadyExists(f"output {identifier!r} of task {task.key} takes one model and already has it")
    created = [
        res.Model(
            key=keys[i],
            compute_task_key=task.key,
            compute_task_output_identifier=m.compute_task_output_identifier,
            address=m.address,
            permissions=task.outputs[m.compute_task_output_identifier].permissions,
            owner=ctx.org,
            creation_date=timestamp(ctx.now),
        )
        for i, m in enumerate(new_models)
    ]
    ctx.store.add_models(created)
    # Each output-asset link recorded once (replays and retries do not duplicate it), all in one write.
    links = [_link(task.key, m.compute_task_output_identifier, res.ASSET_MODEL, m.key) for m in created]
    for model, link, added in zip(created, links, ctx.store.add_output_assets(links), strict=True):
        ctx.emit(res.ASSET_MODEL, model.key, ev.EVENT_ASSET_CREATED, model)
        if added:
            _emit_link(ctx, link)
    return created


def get_model(ctx: Context, key: str) -> res.Model:
    """A model of the channel, or NOT_FOUND."""
    return get_one(key, "model", ctx.store.get_models)


def register_performance(ctx: Context, task_key: str, identifier: str, value: float) -> res.Performance:
    """Register the value of a performance output of an executing task (worker only)."""
    task = executing_task_of_worker(ctx, task_key, "compute_task_key")
    spec = task.function.outputs.get(identifier)
    if spec is None or spec.kind != res.ASSET_PERFORMANCE:
        raise InvalidArgument.on("compute_task_output_identifier", f"{identifier!r} is not a performance output")
    if ctx.store.get_performance(task.key, identifier) is not None:
        raise AlreadyExists(f"performance {identifier!r} of task {task.key} already registered")
    performance = res.Performance(
        compute_task_key=task.key,
        compute_task_output_identifier=identifier,
        performance_value=value,
        creation_date=timestamp(ctx.now),
    )
    ctx.store.add_performance(performance)
    ctx.emit(res.ASSET_PERFORMANCE, f"{task.key}|{identifier}", ev.EVENT_ASSET_CREATED, performance)
    link = _link(task.key, identifier, res.ASSET_PERFORMANCE, f"{task.key}|{identifier}")
    if ctx.store.add_output_assets([link])[0]:
        _emit_link(ctx, link)
    return performance


def register_failure_report(
    ctx: Context, asset_key: str, asset_type: int, error_type: int, logs_address: res.Addressable | None = None
) -> res.FailureReport:
    """Registering a report *is* the failure: the task (worker, EXECUTING) or the function build
    (owner, BUILDING) becomes FAILED, with the cascades that follow."""
    key = validate_key("asset_key", asset_key)
    if error_type not in (res.BUILD_ERROR, res.EXECUTION_ERROR, res.INTERNAL_ERROR):
        raise InvalidArgument.on("error_type", "must be BUILD_ERROR, EXECUTION_ERROR or INTERNAL_ERROR")
    if logs_address is not None:
        v = Violations()
        v.addressable("logs_address", logs_address)
        v.raise_if_any()
    if ctx.store.get_failure_report(key) is not None:
        raise AlreadyExists(f"a failure report for {key} already exists", metadata={"keys": key})
    report = res.FailureReport(
        asset_key=key,
        asset_type=asset_type,
        error_type=error_type,
        logs_address=logs_address,
        creation_date=timestamp(ctx.now),
        owner=ctx.org,
    )
    if asset_type == res.FAILED_ASSET_COMPUTE_TASK:
        task = executing_task_of_worker(ctx, key, "asset_key")
        ctx.store.add_failure_report(report)
        ctx.emit(res.ASSET_FAILURE_REPORT, key, ev.EVENT_ASSET_CREATED, report)
        task.error_type = error_type
        if logs_address is not None:
            task.logs_address.CopyFrom(logs_address)
        tasks.move(ctx, task, res.STATUS_FAILED, "failure report registered")
    elif asset_type == res.FAILED_ASSET_FUNCTION:
        function = functions.get_function(ctx, key)
        if function.owner != ctx.org:
            raise PermissionDenied(f"only {function.owner} may report the build failure of function {key}")
        ctx.store.add_failure_report(report)
        ctx.emit(res.ASSET_FAILURE_REPORT, key, ev.EVENT_ASSET_CREATED, report)
        ctx.build_failure = report
        functions.transition(ctx, function, res.FUNCTION_ACTION_FAILED, "failure report registered")
    else:
        raise InvalidArgument.on("asset_type", "must be FAILED_ASSET_COMPUTE_TASK or FAILED_ASSET_FUNCTION")
    return report


def get_failure_report(ctx: Context, key: str) -> res.FailureReport:
    """The failure report of a task or function, or NOT_FOUND."""
    key = validate_key("asset_key", key)
    report = ctx.store.get_failure_report(key)
    if report is None:
        raise NotFound(f"no failure report for {key}")
    return report


def disable_output(ctx: Context, task_key: str, identifier: str) -> list[res.Model]:
    """Disable the models of a transient output once every consumer is final (domain §2.5)."""
    task = tasks.get_task(ctx, task_key)
    if task.worker != ctx.org:
        raise PermissionDenied(f"only the worker {task.worker} may disable outputs of task {task.key}")
    if task.status not in tasks.FINAL:
        raise FailedPrecondition(f"task {task.key} is not final", reason="TASK_NOT_FINAL")
    output = task.outputs.get(identifier)
    spec = task.function.outputs.get(identifier)
    if output is None or spec is None:
        raise InvalidArgument.on("identifier", f"{identifier!r} is not an output of task {task.key}")
    if spec.kind != res.ASSET_MODEL:
        raise FailedPrecondition(f"output {identifier!r} is not a model output", reason="NOT_A_MODEL_OUTPUT")
    if not output.transient:
        raise FailedPrecondition(f"output {identifier!r} is not transient", reason="NOT_TRANSIENT")
    models = ctx.store.models_of_output(task.key, identifier)
    if not models:
        raise FailedPrecondition(f"output {identifier!r} has no model", reason="NO_MODEL")
    children = ctx.store.children(task.key)
    if not children:
        raise FailedPrecondition(f"task {task.key} has no child", reason="NO_CHILD")
    if any(child.status not in tasks.FINAL for child in children):
        raise FailedPrecondition(f"some children of task {task.key} are not final", reason="CHILDREN_NOT_FINAL")
    disabled = []
    for model in models:
        if model.HasField("address"):  # disabling twice changes nothing
            model.ClearField("address")
            ctx.store.disable_model(model)
            ctx.emit(res.ASSET_MODEL, model.key, ev.EVENT_ASSET_DISABLED, model)
        disabled.append(model)
    return disabled


def register_profiling_step(ctx: Context, asset_key: str, step: str, duration: int) -> res.ProfilingStep:
    """Record a step duration (µs) of a task (its worker) or of a function build (its owner)."""
    key = validate_key("asset_key", asset_key)
    v = Violations()
    v.name("step", step)
    if duration < 0:
        v.add("duration", "must not be negative")
    v.raise_if_any()
    found = ctx.store.get_tasks([key])
    if key in found:
        if found[key].worker != ctx.org:
            raise PermissionDenied(f"only the worker of task {key} may record its profiling")
    else:
        function = functions.get_function(ctx, key)
        if function.owner != ctx.org:
            raise PermissionDenied(f"only the owner of function {key} may record its profiling")
    recorded = res.ProfilingStep(asset_key=key, step=step, duration=duration)
    if not ctx.store.add_profiling_step(recorded):
        raise AlreadyExists(f"step {step!r} of {key} already recorded")
    if key not in found:
        # Function build steps are shared with every organization, as events. A task's steps are its
        # worker's own business (Substra keeps them out of the orchestrator): stored, not broadcast.
        ctx.emit(res.ASSET_PROFILING_STEP, key, ev.EVENT_ASSET_CREATED, recorded)
    return recorded


def record_task_steps(ctx: Context, task: res.ComputeTask, steps: list[tuple[str, int]]) -> None:
    """Steps of a task's execution, (name, duration) (its worker's, checked by the caller); a step already
    recorded (by an earlier attempt) is kept as it was."""
    ctx.store.add_profiling_steps(
        [res.ProfilingStep(asset_key=task.key, step=step, duration=duration) for step, duration in steps]
    )


@dataclass(frozen=True)
class Access:
    """Storage's answer about one asset: whether an organization holds the permission asked, and for a
    model whether the ledger disabled it."""

    allowed: bool
    disabled: bool = False


def can_process(ctx: Context, asset_kind: int, asset_key: str, org: str, *, download: bool = False) -> Access:
    """Whether ``organization_id`` may process (or download) an asset: storage's check."""
    key = validate_key("asset_key", asset_key)
    kind = asset_kind
    if kind == res.ASSET_MODEL:
        model = get_model(ctx, key)
        permission = model.permissions.download if download else model.permissions.process
        return Access(allows(permission, org), disabled=not model.HasField("address"))
    if kind == res.ASSET_FUNCTION:
        permission = functions.get_function(ctx, key).permissions.process
    elif kind == res.ASSET_DATA_MANAGER:
        permission = get_one(key, "data manager", ctx.store.get_data_managers).permissions.process
    elif kind == res.ASSET_DATA_SAMPLE:
        return Access(get_one(key, "data sample", ctx.store.get_data_samples).owner == org)  # samples stay home
    else:
        raise InvalidArgument.on("asset_kind", "must be a model, function, data manager or data sample")
    return Access(allows(permission, org))


def can_access_logs(ctx: Context, task_key: str, org: str) -> bool:
    """Logs of a task: its logs permission, or the function's process permission for a build error.
    A function key (the asset of a build failure report) is answered by its process permission."""
    key = validate_key("asset_key", task_key)
    if key not in ctx.store.get_tasks([key]) and ctx.store.get_functions([key]):
        return allows(functions.get_function(ctx, key).permissions.process, org)
    task = tasks.get_task(ctx, key)
    if task.HasField("error_type") and task.error_type == res.BUILD_ERROR:
        return allows(task.function.permissions.process, org)
    return allows(task.logs_permission, org)
