"""Compute tasks: batch registration (domain §3.2-3.5), the state machine and its cascades (§2.2).

Where Substra leaves work stranded we do better (domain §8): the children of a failed or
canceled task end CANCELED (with the reason) instead of waiting forever, and canceling a
function cancels the tasks still waiting for its build; a function whose every task ended before
its build started is canceled instead of built. A failed (or canceled) build ends every
task of the function first, chained ones included; only then are other descendants canceled.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import plans
from services.asset.domain.common import (
    Context,
    Violations,
    allows,
    check_authorized_ids,
    get_one,
    make_permissions,
    timestamp,
    union,
)
from services.kit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied

FINAL = frozenset({res.STATUS_DONE, res.STATUS_CANCELED, res.STATUS_FAILED})
NON_FINAL = frozenset(set(plans.COUNTER) - FINAL)
# Internal transitions (driven by the function's build and by parents) and worker/owner actions.
ALLOWED = {
    res.STATUS_BUILDING: {res.STATUS_WAITING_FOR_BUILDER_SLOT},
    res.STATUS_WAITING_FOR_PARENT_TASKS: {res.STATUS_BUILDING},
    res.STATUS_WAITING_FOR_EXECUTOR_SLOT: {res.STATUS_BUILDING, res.STATUS_WAITING_FOR_PARENT_TASKS},
    res.STATUS_EXECUTING: {res.STATUS_WAITING_FOR_EXECUTOR_SLOT},
    res.STATUS_DONE: {res.STATUS_EXECUTING},
    res.STATUS_CANCELED: NON_FINAL,
    res.STATUS_FAILED: NON_FINAL,
}
ACTIONS = {
    res.TASK_ACTION_EXECUTING: res.STATUS_EXECUTING,
    res.TASK_ACTION_DONE: res.STATUS_DONE,
    res.TASK_ACTION_CANCELED: res.STATUS_CANCELED,
    res.TASK_ACTION_FAILED: res.STATUS_FAILED,
}
INPUT_DEFINED = {res.STATUS_WAITING_FOR_EXECUTOR_SLOT, res.STATUS_EXECUTING, res.STATUS_DONE, res.STATUS_FAILED}


@dataclass
class NewTaskInput:
    """One input of a task being registered: an asset by key, or a parent task's output."""

    identifier: str
    asset_key: str = ""
    parent_task_key: str = ""
    parent_task_output_identifier: str = ""


@dataclass
class NewTaskOutput:
    """Who may use what one output of a task will produce, and whether it is transient."""

    permissions: res.NewPermissions = field(default_factory=res.NewPermissions)
    transient: bool = False


@dataclass
class NewTask:
    """A task as its plan's owner asks to register it; the ledger derives the rest."""

    key: str
    compute_plan_key: str
    function_key: str
    worker: str = ""
    tag: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    inputs: list[NewTaskInput] = field(default_factory=list)
    outputs: dict[str, NewTaskOutput] = field(default_factory=dict)


def status_name(status: int) -> str:
    """``STATUS_DONE`` for 4."""
    return res.ComputeTaskStatus.Name(status)


# ----------------------------------------------------------------------------------- state machine
def move(ctx: Context, task: res.ComputeTask, target: int, reason: str) -> None:
    """Apply one transition and everything it entails: dates, counters, event, then the cascades
    (released children, canceled descendants), processed iteratively so deep plans cannot
    exhaust the stack."""
    _transition(ctx, task, target, reason)
    _cascade(ctx, task, target)


def _cascade(ctx: Context, task: res.ComputeTask, target: int) -> None:
    """What a task reaching ``target`` does to its descendants (nothing unless ``target`` is final)."""
    if target not in FINAL:
        return
    pending = deque([(task, target)])
    while pending:
        parent, status = pending.popleft()
        for child in ctx.store.children(parent.key):
            waiting = child.status == res.STATUS_WAITING_FOR_PARENT_TASKS
            if status == res.STATUS_DONE and waiting and ctx.store.parents_done(child.key):
                _transition(ctx, child, res.STATUS_WAITING_FOR_EXECUTOR_SLOT, f"last parent task {parent.key} done")
            elif status != res.STATUS_DONE and child.status in NON_FINAL - {res.STATUS_EXECUTING}:
                verb = "failed" if status == res.STATUS_FAILED else "was canceled"
                _transition(ctx, child, res.STATUS_CANCELED, f"parent task {parent.key} {verb}")
                pending.append((child, res.STATUS_CANCELED))


def _transition(ctx: Context, task: res.ComputeTask, target: int, reason: str) -> None:
    if task.status not in ALLOWED[target]:
        raise FailedPrecondition(
            f"task {task.key} is {status_name(task.status)}: it cannot become {status_name(target)}",
            reason="ILLEGAL_TRANSITION",
            metadata={"status": status_name(task.status)},
        )
    old = task.status
    task.status = target
    if target == res.STATUS_EXECUTING:
        task.start_date.CopyFrom(timestamp(ctx.now))
    if target in FINAL:
        task.end_date.CopyFrom(timestamp(ctx.now))
    if target == res.STATUS_FAILED and not task.HasField("error_type"):
        # Failed by an action rather than a report: the SDK waits forever on a FAILED task without an
        # error type (contract §8), so record it as ours.
        task.error_type = res.INTERNAL_ERROR
    ctx.store.update_tasks([task])  # kept by the store and sent with its neighbours (ADR 0003)
    plan = plans.get_plan(ctx, task.compute_plan_key, for_update=True)
    plans.count(plan, old, target)
    ctx.dirty_plans.add(plan.key)
    if target == res.STATUS_FAILED:
        if not plans.is_terminated(plan):
            plan.failure_date.CopyFrom(timestamp(ctx.now))
        if not plan.failed_task_key:
            plan.failed_task_key = task.key
    ctx.emit(
        res.ASSET_COMPUTE_TASK, task.key, ev.EVENT_ASSET_UPDATED, _snapshot(task), reason, status_change=(old, target)
    )
    if old == res.STATUS_WAITING_FOR_BUILDER_SLOT and target in FINAL:
        _cancel_unneeded_build(ctx, task.function_key)


def _cancel_unneeded_build(ctx: Context, function_key: str) -> None:
    """A function still WAITING whose every task has ended (canceled, or failed by an action) before its
    build started is CANCELED: nothing would use the build (Substra's builder gives up the same way)."""
    from services.asset.domain import functions  # the function rules import this module too

    function = ctx.store.get_functions([function_key]).get(function_key)
    if function is None or function.status != res.FUNCTION_STATUS_WAITING:
        return
    if ctx.store.function_has_tasks(function_key, NON_FINAL):
        return
    functions.transition(ctx, function, res.FUNCTION_ACTION_CANCELED, "every task using it ended before its build")


def _snapshot(task: res.ComputeTask) -> res.ComputeTask:
    """The task as events carry it: without the embedded function."""
    snapshot = res.ComputeTask()
    snapshot.CopyFrom(task)
    snapshot.ClearField("function")
    return snapshot


def get_task(ctx: Context, key: str) -> res.ComputeTask:
    """A task of the channel, or NOT_FOUND."""
    return get_one(key, "task", ctx.store.get_tasks)


def apply_action(ctx: Context, key: str, action: int, reason: str = "") -> res.ComputeTask:
    """A worker or owner action (domain §1.15): EXECUTING and DONE by the worker; CANCELED and
    FAILED by the owner or the worker. Applying an action twice is FAILED_PRECONDITION."""
    if action not in ACTIONS:
        raise InvalidArgument.on("action", "must be EXECUTING, DONE, CANCELED or FAILED")
    task = get_task(ctx, key)
    target = ACTIONS[action]
    if target in (res.STATUS_EXECUTING, res.STATUS_DONE):
        if ctx.org != task.worker:
            raise PermissionDenied(f"only the worker {task.worker} may mark task {task.key} {status_name(target)}")
    elif ctx.org not in (task.worker, task.owner):
        raise PermissionDenied(f"only the owner or the worker may mark task {task.key} {status_name(target)}")
    move(ctx, task, target, reason or "User action")
    return task


def on_function_status(ctx: Context, function: res.Function) -> None:
    """Propagate a function's new build status to its tasks (domain §2.1)."""
    status = function.status
    if status == res.FUNCTION_STATUS_BUILDING:
        affected = [res.STATUS_WAITING_FOR_BUILDER_SLOT]
    elif status == res.FUNCTION_STATUS_READY:
        affected = [res.STATUS_BUILDING]
    else:  # FAILED or CANCELED: also the tasks still waiting for the builder (Substra leaves them)
        affected = [res.STATUS_BUILDING, res.STATUS_WAITING_FOR_BUILDER_SLOT]
    ended: list[res.ComputeTask] = []
    for key in [t.key for t in ctx.store.tasks_of_function(function.key, affected)]:
        task = ctx.store.get_tasks([key])[key]  # re-read: a cascade may have moved it meanwhile
        if task.status not in affected:
            continue
        if status == res.FUNCTION_STATUS_BUILDING:
            move(ctx, task, res.STATUS_BUILDING, f"function {function.key} is building")
        elif status == res.FUNCTION_STATUS_READY:
            ready = ctx.store.parents_done(task.key)
            target = res.STATUS_WAITING_FOR_EXECUTOR_SLOT if ready else res.STATUS_WAITING_FOR_PARENT_TASKS
            move(ctx, task, target, f"function {function.key} finished building")
        elif status == res.FUNCTION_STATUS_FAILED:
            task.error_type = res.BUILD_ERROR
            if ctx.build_failure is not None and ctx.build_failure.HasField("logs_address"):
                task.logs_address.CopyFrom(ctx.build_failure.logs_address)
            _transition(ctx, task, res.STATUS_FAILED, f"function {function.key} failed to build")
            ended.append(task)
        else:
            _transition(ctx, task, res.STATUS_CANCELED, f"build of function {function.key} was canceled")
            ended.append(task)
    # Every task of the function shares its fate (tasks chained on the same function fail with the
    # build error rather than being canceled as children); only then do other descendants follow.
    for task in ended:
        _cascade(ctx, task, task.status)


def cancel_all(ctx: Context, keys: list[str], reason: str) -> None:
    """Cancel each task still non-final when its turn comes (earlier cascades may reach it first)."""
    for key in keys:
        task = ctx.store.get_tasks([key])[key]
        if task.status in NON_FINAL:
            move(ctx, task, res.STATUS_CANCELED, reason)


# ------------------------------------------------------------------------------------ registration
class _Batch:
    """What registering one batch needs, loaded once: plan, functions, parents, assets, orgs."""

    def __init__(self, ctx: Context, requests: list[NewTask]) -> None:
        self.ctx = ctx
        self.requests = requests
        self.orgs = ctx.store.organization_ids()
        self.functions: dict[str, res.Function] = {}
        self.parents: dict[str, res.ComputeTask] = {}
        self.managers: dict[str, res.DataManager] = {}
        self.samples: dict[str, res.DataSample] = {}
        self.models: dict[str, res.Model] = {}
        self.new: dict[str, res.ComputeTask] = {}


def register_tasks(ctx: Context, requests: list[NewTask]) -> list[res.ComputeTask]:
    """Register a batch of tasks of one plan, whole or not at all, in topological order."""
    if not requests:
        raise InvalidArgument.on("tasks", "at least one task is required")
    v = Violations()
    keys = [v.key(f"tasks[{i}].key", t.key) for i, t in enumerate(requests)]
    plan_keys = {v.key(f"tasks[{i}].compute_plan_key", t.compute_plan_key) for i, t in enumerate(requests)}
    # Malformed references are INVALID_ARGUMENT, not NOT_FOUND: check them before any lookup.
    for i, request in enumerate(requests):
        for j, given in enumerate(request.inputs):
            if given.asset_key:
                v.key(f"tasks[{i}].inputs[{j}].asset_key", given.asset_key)
            if given.parent_task_key:
                v.key(f"tasks[{i}].inputs[{j}].parent_task_key", given.parent_task_key)
    if len(plan_keys) != 1:
        v.add("tasks", "all tasks of a batch must belong to the same compute plan")
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key in seen:
            v.add(f"tasks[{i}].key", "duplicate key in the batch")
        seen.add(key)
    v.raise_if_any()
    existing = ctx.store.existing_task_keys(keys)
    if existing:
        raise AlreadyExists(f"{len(existing)} task(s) already exist", metadata={"keys": ",".join(sorted(existing))})
    plan = plans.get_plan(ctx, next(iter(plan_keys)), for_update=True)
    if plan.owner != ctx.org:
        raise PermissionDenied(f"only {plan.owner} may add tasks to compute plan {plan.key}")
    if plans.is_terminated(plan):
        raise FailedPrecondition(f"compute plan {plan.key} is canceled or failed", reason="PLAN_TERMINATED")

    batch = _Batch(ctx, requests)
    _load(batch, keys)
    order = _sort(batch, keys)
    v = Violations()
    for i in order:
        batch.new[keys[i]] = _build(batch, v, i, keys[i], requests[i], plan)
    v.raise_if_any()
    created = [batch.new[keys[i]] for i in order]
    ctx.store.add_tasks(created)
    for task in created:
        plans.count(plan, None, task.status)
        ctx.emit(res.ASSET_COMPUTE_TASK, task.key, ev.EVENT_ASSET_CREATED, _snapshot(task))
        if task.status == res.STATUS_FAILED:
            if not plan.HasField("failure_date"):
                plan.failure_date.CopyFrom(timestamp(ctx.now))
            plan.failed_task_key = plan.failed_task_key or task.key
    for function_key in {t.function_key for t in created if t.status == res.STATUS_CANCELED}:
        _cancel_unneeded_build(ctx, function_key)  # born canceled (a parent ended) with nothing else to run
    ctx.dirty_plans.add(plan.key)
    # Registration order matters to callers: answer in the order they sent.
    return [batch.new[key] for key in keys]


def _parent_keys(request: NewTask) -> list[str]:
    return list(dict.fromkeys(i.parent_task_key.lower() for i in request.inputs if i.parent_task_key))


def _load(batch: _Batch, keys: list[str]) -> None:
    """Fetch in a few queries everything the batch references."""
    store = batch.ctx.store
    batch.functions = store.get_functions({t.function_key.lower() for t in batch.requests})
    outside = {p for t in batch.requests for p in _parent_keys(t)} - set(keys)
    batch.parents = store.get_tasks(outside)
    batch.functions.update(store.get_functions({p.function_key for p in batch.parents.values()} - set(batch.functions)))
    asset_keys = {i.asset_key.lower() for t in batch.requests for i in t.inputs if i.asset_key}
    batch.managers = store.get_data_managers(asset_keys)
    batch.samples = store.get_data_samples(asset_keys - set(batch.managers))
    batch.models = store.get_models(asset_keys - set(batch.managers) - set(batch.samples))


def _sort(batch: _Batch, keys: list[str]) -> list[int]:
    """Kahn's algorithm over the batch; unknown parents are NOT_FOUND, cycles INVALID_ARGUMENT."""
    index = {key: i for i, key in enumerate(keys)}
    pending = [0] * len(keys)
    children: dict[int, list[int]] = {}
    for i, request in enumerate(batch.requests):
        for parent in _parent_keys(request):
            if parent in index:
                pending[i] += 1
                children.setdefault(index[parent], []).append(i)
            elif parent not in batch.parents:
                raise NotFound(f"tasks[{i}]: parent task {parent} not found", metadata={"keys": parent})
    ready = deque(i for i in range(len(keys)) if pending[i] == 0)
    order = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for child in children.get(i, ()):
            pending[child] -= 1
            if pending[child] == 0:
                ready.append(child)
    if len(order) != len(keys):
        stuck = sorted(keys[i] for i in range(len(keys)) if pending[i])
        raise InvalidArgument(
            "the tasks form a cycle", violations=[], metadata={"keys": ",".join(stuck)}, reason="CYCLE"
        )
    return order


def _build(batch: _Batch, v: Violations, i: int, key: str, request: NewTask, plan: res.ComputePlan) -> res.ComputeTask:
    """Validate one task against its function and referenced assets; return its stored form."""
    ctx = batch.ctx
    path = f"tasks[{i}]"
    function_key = request.function_key.lower()
    function = batch.functions.get(function_key)
    if function is None:
        raise NotFound(f"{path}: function {request.function_key} not found", metadata={"keys": request.function_key})
    if not allows(function.permissions.process, ctx.org):
        raise PermissionDenied(f"{path}: {ctx.org} may not process function {function.key}")
    tag, metadata = request.tag, dict(request.metadata)
    if len(tag) > 100:
        v.add(f"{path}.tag", "must be at most 100 characters")
    v.metadata(f"{path}.metadata", metadata)

    manager, parents, inputs = _check_inputs(batch, v, path, request, function)
    worker = request.worker
    if manager is not None:
        if worker and worker != manager.owner:
            v.add(f"{path}.worker", f"must be the data manager's owner {manager.owner}")
        worker = manager.owner
    elif not worker:
        v.add(f"{path}.worker", "is required when the task has no data manager input")
    elif worker not in batch.orgs:
        v.add(f"{path}.worker", f"{worker!r} is not an organization of this channel")
    if worker in batch.orgs:  # an unknown worker is reported above, not as a permission refusal
        _check_parent_permissions(batch, v, path, request, worker)
    outputs = _check_outputs(batch, v, path, request, function)

    if manager is not None:
        logs_permission = manager.logs_permission
    else:
        logs_permission = res.Permission(public=False, authorized_ids=[ctx.org])
        for parent in parents:
            logs_permission = union(logs_permission, parent.logs_permission)
    failed_build = {}
    if function.status == res.FUNCTION_STATUS_FAILED:
        # Registered after its function failed to build: it fails at once, with the build's logs (as the
        # tasks that were waiting for the build when it failed).
        failed_build["error_type"] = res.BUILD_ERROR
        report = ctx.store.get_failure_report(function.key)
        if report is not None and report.HasField("logs_address"):
            failed_build["logs_address"] = report.logs_address
    return res.ComputeTask(
        key=key,
        owner=ctx.org,
        compute_plan_key=plan.key,
        function_key=function.key,
        rank=max((p.rank for p in parents), default=-1) + 1,
        status=_initial_status(function, parents),
        worker=worker,
        creation_date=timestamp(ctx.now),
        metadata=metadata,
        logs_permission=logs_permission,
        inputs=inputs,
        outputs=outputs,
        tag=tag,
        metadata_order=list(metadata),
        outputs_order=list(outputs),
        function=function,
        **failed_build,
    )


def _initial_status(function: res.Function, parents: list[res.ComputeTask]) -> int:
    if any(p.status in (res.STATUS_FAILED, res.STATUS_CANCELED) for p in parents):
        return res.STATUS_CANCELED
    return {
        res.FUNCTION_STATUS_WAITING: res.STATUS_WAITING_FOR_BUILDER_SLOT,
        res.FUNCTION_STATUS_BUILDING: res.STATUS_BUILDING,
        res.FUNCTION_STATUS_FAILED: res.STATUS_FAILED,
        res.FUNCTION_STATUS_CANCELED: res.STATUS_CANCELED,
    }.get(
        function.status,
        res.STATUS_WAITING_FOR_EXECUTOR_SLOT
        if all(p.status == res.STATUS_DONE for p in parents)
        else res.STATUS_WAITING_FOR_PARENT_TASKS,
    )


def _parent(batch: _Batch, key: str) -> res.ComputeTask | None:
    return batch.new.get(key) or batch.parents.get(key)


def _check_inputs(batch: _Batch, v: Violations, path: str, request: NewTask, function: res.Function):
    ctx = batch.ctx
    counts: dict[str, int] = {}
    manager: res.DataManager | None = None
    samples: list[tuple[int, res.DataSample]] = []
    parents: dict[str, res.ComputeTask] = {}
    inputs: list[res.ComputeTaskInput] = []
    for j, given in enumerate(request.inputs):
        ipath = f"{path}.inputs[{j}]"
        spec = function.inputs.get(given.identifier)
        if spec is None:
            v.add(f"{ipath}.identifier", f"{given.identifier!r} is not an input of function {function.key}")
            continue
        counts[given.identifier] = counts.get(given.identifier, 0) + 1
        by_key = bool(given.asset_key)
        by_parent = bool(given.parent_task_key or given.parent_task_output_identifier)
        if by_key == by_parent:
            v.add(ipath, "give either asset_key or parent_task_key with parent_task_output_identifier")
            continue
        if by_key:
            asset_key = v.key(f"{ipath}.asset_key", given.asset_key)
            inputs.append(res.ComputeTaskInput(identifier=given.identifier, asset_key=asset_key))
            if spec.kind == res.ASSET_DATA_MANAGER:
                manager = batch.managers.get(asset_key)
                if manager is None:
                    raise NotFound(f"{ipath}: data manager {asset_key} not found", metadata={"keys": asset_key})
                if not allows(manager.permissions.process, ctx.org):
                    raise PermissionDenied(f"{ipath}: {ctx.org} may not process data manager {asset_key}")
            elif spec.kind == res.ASSET_DATA_SAMPLE:
                sample = batch.samples.get(asset_key)
                if sample is None:
                    raise NotFound(f"{ipath}: data sample {asset_key} not found", metadata={"keys": asset_key})
                samples.append((j, sample))
            else:
                model = batch.models.get(asset_key)
                if model is None:
                    raise NotFound(f"{ipath}: model {asset_key} not found", metadata={"keys": asset_key})
                if not model.HasField("address"):
                    raise FailedPrecondition(f"{ipath}: model {asset_key} has been disabled", reason="MODEL_DISABLED")
            continue
        if spec.kind != res.ASSET_MODEL:
            v.add(ipath, "data manager and data sample inputs must be given by asset_key")
            continue
        parent_key = v.key(f"{ipath}.parent_task_key", given.parent_task_key)
        identifier = given.parent_task_output_identifier
        inputs.append(
            res.ComputeTaskInput(
                identifier=given.identifier,
                parent_task_output=res.ParentTaskOutputRef(parent_task_key=parent_key, output_identifier=identifier),
            )
        )
        parent = _parent(batch, parent_key)
        if parent is None:  # an invalid key; the sort has already refused unknown ones
            continue
        parents[parent_key] = parent
        parent_function = batch.functions[parent.function_key]
        output = parent_function.outputs.get(identifier)
        if output is None:
            v.add(f"{ipath}.parent_task_output_identifier", f"{identifier!r} is not an output of task {parent_key}")
            continue
        if output.kind != spec.kind:
            v.add(ipath, f"kind mismatch: output {identifier!r} is {res.AssetKind.Name(output.kind)}")
        if output.multiple and not spec.multiple:
            v.add(ipath, f"the multiple output {identifier!r} cannot feed a single input")
        if parent.status == res.STATUS_DONE and parent.key in batch.parents:
            disabled = [m for m in ctx.store.models_of_output(parent.key, identifier) if not m.HasField("address")]
            if disabled:
                raise FailedPrecondition(
                    f"{ipath}: model {disabled[0].key} of task {parent.key} has been disabled", reason="MODEL_DISABLED"
                )
    for identifier, spec in function.inputs.items():
        n = counts.get(identifier, 0)
        if n == 0 and not spec.optional:
            v.add(f"{path}.inputs", f"the input {identifier!r} of function {function.key} is required")
        if n > 1 and not spec.multiple:
            v.add(f"{path}.inputs", f"the input {identifier!r} takes one asset, {n} given")
    if manager is not None:
        for j, sample in samples:
            if manager.key not in sample.data_manager_keys:
                v.add(f"{path}.inputs[{j}].asset_key", f"data sample {sample.key} is not linked to {manager.key}")
    return manager, list(parents.values()), inputs


def _check_parent_permissions(batch: _Batch, v: Violations, path: str, request: NewTask, worker: str):
    """The worker must be allowed to process each model it consumes (domain §1.15)."""
    if not worker:
        return
    for j, given in enumerate(request.inputs):
        if given.asset_key:
            model = batch.models.get(given.asset_key.lower())
            if model is not None and not allows(model.permissions.process, worker):
                raise PermissionDenied(f"{path}.inputs[{j}]: worker {worker} may not process model {model.key}")
            continue
        parent = _parent(batch, given.parent_task_key.lower())
        output = parent.outputs.get(given.parent_task_output_identifier) if parent else None
        if output is not None and not allows(output.permissions.process, worker):
            raise PermissionDenied(
                f"{path}.inputs[{j}]: worker {worker} may not process output "
                f"{given.parent_task_output_identifier!r} of task {parent.key}"
            )


def _check_outputs(batch: _Batch, v: Violations, path: str, request: NewTask, function: res.Function):
    declared, given = set(function.outputs), set(request.outputs)
    for missing in sorted(declared - given):
        v.add(f"{path}.outputs", f"the output {missing!r} of function {function.key} is missing")
    for extra in sorted(given - declared):
        v.add(f"{path}.outputs[{extra}]", f"{extra!r} is not an output of function {function.key}")
    outputs = {}
    for identifier in [name for name in request.outputs if name in declared]:  # as the request declares them
        spec, out = function.outputs[identifier], request.outputs[identifier]
        opath = f"{path}.outputs[{identifier}]"
        check_authorized_ids(v, f"{opath}.permissions", out.permissions, batch.orgs)
        if spec.kind == res.ASSET_PERFORMANCE:
            if not out.permissions.public:
                v.add(f"{opath}.permissions.public", "a performance output must be public")
            if out.transient:
                v.add(f"{opath}.transient", "a performance output cannot be transient")
        outputs[identifier] = res.ComputeTaskOutput(
            permissions=make_permissions(out.permissions, batch.ctx.org), transient=out.transient
        )
    return outputs


# ----------------------------------------------------------------------------------- input assets
def input_assets(ctx: Context, key: str) -> list[res.ComputeTaskInputAsset]:
    """The task's inputs resolved to concrete assets, in order (domain §3.6)."""
    return input_assets_of(ctx, get_task(ctx, key))


def input_assets_of(ctx: Context, task: res.ComputeTask) -> list[res.ComputeTaskInputAsset]:
    """:func:`input_assets` of a task already read."""
    if task.status not in INPUT_DEFINED:
        raise FailedPrecondition(
            f"the inputs of task {task.key} are not defined while it is {status_name(task.status)}",
            reason="INPUTS_NOT_DEFINED",
        )
    function = task.function
    keys = {i.asset_key for i in task.inputs if i.WhichOneof("ref") == "asset_key"}
    managers = ctx.store.get_data_managers(keys)
    samples = ctx.store.get_data_samples(keys - set(managers))
    models = ctx.store.get_models(keys - set(managers) - set(samples))
    produced = ctx.store.models_of_outputs(
        (i.parent_task_output.parent_task_key, i.parent_task_output.output_identifier)
        for i in task.inputs
        if i.WhichOneof("ref") == "parent_task_output"
    )
    assets = []
    for given in task.inputs:
        kind = function.inputs[given.identifier].kind
        if given.WhichOneof("ref") == "parent_task_output":
            ref = given.parent_task_output
            for model in produced[(ref.parent_task_key, ref.output_identifier)]:
                assets.append(res.ComputeTaskInputAsset(identifier=given.identifier, kind=kind, model=model))
        elif given.asset_key in managers:
            manager = managers[given.asset_key]
            assets.append(res.ComputeTaskInputAsset(identifier=given.identifier, kind=kind, data_manager=manager))
        elif given.asset_key in samples:
            sample = samples[given.asset_key]
            assets.append(res.ComputeTaskInputAsset(identifier=given.identifier, kind=kind, data_sample=sample))
        elif given.asset_key in models:
            model = models[given.asset_key]
            assets.append(res.ComputeTaskInputAsset(identifier=given.identifier, kind=kind, model=model))
    return assets
