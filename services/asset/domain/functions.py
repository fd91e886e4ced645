"""Functions: inputs and outputs (domain §3.1), ownership, and the build state machine (§2.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import tasks
from services.asset.domain.common import (
    Context,
    Violations,
    check_authorized_ids,
    get_one,
    make_permissions,
    timestamp,
)
from services.kit.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied

INPUT_KINDS = {res.ASSET_MODEL, res.ASSET_DATA_SAMPLE, res.ASSET_DATA_MANAGER}
OUTPUT_KINDS = {res.ASSET_MODEL, res.ASSET_PERFORMANCE}

# action → (allowed current statuses, new status)
TRANSITIONS = {
    res.FUNCTION_ACTION_BUILDING: ({res.FUNCTION_STATUS_WAITING}, res.FUNCTION_STATUS_BUILDING),
    res.FUNCTION_ACTION_READY: ({res.FUNCTION_STATUS_BUILDING}, res.FUNCTION_STATUS_READY),
    res.FUNCTION_ACTION_FAILED: ({res.FUNCTION_STATUS_BUILDING}, res.FUNCTION_STATUS_FAILED),
    res.FUNCTION_ACTION_CANCELED: (
        {res.FUNCTION_STATUS_WAITING, res.FUNCTION_STATUS_BUILDING},
        res.FUNCTION_STATUS_CANCELED,
    ),
}

# Identifiers name files on the worker (its outputs): letters, digits, "_" and "-" only, never a path.
IDENTIFIER = re.compile(r"[A-Za-z0-9_-]{1,100}")
IDENTIFIER_RULE = "identifiers are 1 to 100 letters, digits, '_' or '-'"


@dataclass
class NewFunction:
    """A function as its owner asks to register it (its files already in the owner's storage)."""

    key: str
    name: str
    description: res.Addressable = field(default_factory=res.Addressable)
    archive: res.Addressable = field(default_factory=res.Addressable)
    permissions: res.NewPermissions = field(default_factory=res.NewPermissions)
    metadata: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, res.FunctionInput] = field(default_factory=dict)
    outputs: dict[str, res.FunctionOutput] = field(default_factory=dict)


def validate_io(v: Violations, inputs: dict[str, res.FunctionInput], outputs: dict[str, res.FunctionOutput]) -> None:
    """The rules of domain §3.1 on declared inputs and outputs."""
    managers = [name for name, spec in inputs.items() if spec.kind == res.ASSET_DATA_MANAGER]
    samples = [name for name, spec in inputs.items() if spec.kind == res.ASSET_DATA_SAMPLE]
    for name, spec in inputs.items():
        path = f"inputs[{name}]"
        if not IDENTIFIER.fullmatch(name):
            v.add(path, IDENTIFIER_RULE)
        if spec.kind not in INPUT_KINDS:
            v.add(f"{path}.kind", "must be ASSET_MODEL, ASSET_DATA_SAMPLE or ASSET_DATA_MANAGER")
        if spec.kind == res.ASSET_DATA_MANAGER and (spec.multiple or spec.optional):
            v.add(path, "a data manager input can be neither multiple nor optional")
    if len(managers) > 1:
        v.add("inputs", "at most one data manager input")
    if bool(managers) != bool(samples):
        v.add("inputs", "data manager and data sample inputs go together: both or neither")
    for name, spec in outputs.items():
        path = f"outputs[{name}]"
        if not IDENTIFIER.fullmatch(name):
            v.add(path, IDENTIFIER_RULE)
        if spec.kind not in OUTPUT_KINDS:
            v.add(f"{path}.kind", "must be ASSET_MODEL or ASSET_PERFORMANCE")
        if spec.kind == res.ASSET_PERFORMANCE and spec.multiple:
            v.add(path, "a performance output cannot be multiple")


def register_function(ctx: Context, new: NewFunction) -> res.Function:
    """Register a function owned by the caller; it starts WAITING for its build."""
    v = Violations()
    key = v.key("key", new.key)
    v.name("name", new.name)
    v.addressable("description", new.description)
    v.addressable("archive", new.archive)
    v.metadata("metadata", dict(new.metadata))
    validate_io(v, dict(new.inputs), dict(new.outputs))
    check_authorized_ids(v, "permissions", new.permissions, ctx.store.organization_ids())
    v.raise_if_any()
    if ctx.store.get_functions([key]):
        raise AlreadyExists(f"function {key} already exists", metadata={"keys": key})
    function = res.Function(
        key=key,
        name=new.name,
        description=new.description,
        archive=new.archive,
        permissions=make_permissions(new.permissions, ctx.org),
        owner=ctx.org,
        creation_date=timestamp(ctx.now),
        metadata=dict(new.metadata),
        inputs=dict(new.inputs),
        outputs=dict(new.outputs),
        status=res.FUNCTION_STATUS_WAITING,
        metadata_order=list(new.metadata),
        inputs_order=list(new.inputs),
        outputs_order=list(new.outputs),
    )
    ctx.store.add_function(function)
    ctx.emit(res.ASSET_FUNCTION, key, ev.EVENT_ASSET_CREATED, function)
    return function


def get_function(ctx: Context, key: str) -> res.Function:
    """A function of the channel, or NOT_FOUND."""
    return get_one(key, "function", ctx.store.get_functions)


def update_function(ctx: Context, key: str, name: str = "", image: res.Addressable | None = None) -> res.Function:
    """Rename a function and/or set its built image (owner only)."""
    function = get_function(ctx, key)
    v = Violations()
    if name:
        v.name("name", name)
    if image is not None:
        v.addressable("image", image)
    if not name and image is None:
        v.add("name", "nothing to update: give a name or an image")
    v.raise_if_any()
    if function.owner != ctx.org:
        raise PermissionDenied(f"only {function.owner} may update function {function.key}")
    if name:
        function.name = name
    if image is not None:
        function.image.CopyFrom(image)
    ctx.store.update_function(function)
    ctx.emit(res.ASSET_FUNCTION, function.key, ev.EVENT_ASSET_UPDATED, function)
    return function


def apply_action(ctx: Context, key: str, action: int, reason: str = "") -> res.Function:
    """Apply a build action (owner only) and propagate it to the tasks using the function."""
    if action not in TRANSITIONS:
        raise InvalidArgument.on("action", "must be BUILDING, READY, FAILED or CANCELED")
    function = get_function(ctx, key)
    if function.owner != ctx.org:
        raise PermissionDenied(f"only {function.owner} may change the status of function {function.key}")
    if action == res.FUNCTION_ACTION_FAILED:
        raise FailedPrecondition(
            "a build failure is recorded by registering a failure report", reason="USE_FAILURE_REPORT"
        )
    transition(ctx, function, action, reason or "User action")
    return function


def transition(ctx: Context, function: res.Function, action: int, reason: str) -> None:
    """Move ``function`` to the status ``action`` leads to, then update its tasks (§2.1)."""
    allowed, target = TRANSITIONS[action]
    if function.status not in allowed:
        raise FailedPrecondition(
            f"function {function.key} is {res.FunctionStatus.Name(function.status)}: "
            f"{res.FunctionAction.Name(action)} is not allowed",
            reason="ILLEGAL_TRANSITION",
        )
    previous, function.status = function.status, target
    ctx.store.update_function(function)
    ctx.emit(
        res.ASSET_FUNCTION, function.key, ev.EVENT_ASSET_UPDATED, function, reason, status_change=(previous, target)
    )
    tasks.on_function_status(ctx, function)
