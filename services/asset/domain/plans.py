"""Compute plans (domain §1.7) with status, counters and dates maintained on every task change (§2.3).

Status precedence (ours, see docs/adr/0003-ledger.md): CANCELED if the plan was canceled; FAILED
if a task failed; CANCELED if a task was canceled; CREATED while there is no task or every task
waits for its function's build; DONE when every task is done; DOING otherwise.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain.common import Context, Violations, timestamp, validate_key
from services.kit.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied

COUNTER = {
    res.STATUS_WAITING_FOR_BUILDER_SLOT: "waiting_builder_slot_count",
    res.STATUS_BUILDING: "building_count",
    res.STATUS_WAITING_FOR_PARENT_TASKS: "waiting_parent_tasks_count",
    res.STATUS_WAITING_FOR_EXECUTOR_SLOT: "waiting_executor_slot_count",
    res.STATUS_EXECUTING: "executing_count",
    res.STATUS_DONE: "done_count",
    res.STATUS_CANCELED: "canceled_count",
    res.STATUS_FAILED: "failed_count",
}
FINAL_COUNTERS = ("done_count", "canceled_count", "failed_count")


@dataclass
class NewPlan:
    """A compute plan as its owner asks to register it (the key is made by the client)."""

    key: str
    name: str
    tag: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    creator: str = ""  # the gateway's user who created it, for display


def register_plan(ctx: Context, new: NewPlan) -> res.ComputePlan:
    """Register a plan owned by the caller (keys are made by the client)."""
    v = Violations()
    key = v.key("key", new.key)
    v.name("name", new.name)
    if len(new.tag) > 100:
        v.add("tag", "must be at most 100 characters")
    if len(new.creator) > 150:  # the gateway's user names are at most 150 characters
        v.add("creator", "must be at most 150 characters")
    v.metadata("metadata", dict(new.metadata))
    v.raise_if_any()
    if ctx.store.get_plan(key) is not None:
        raise AlreadyExists(f"compute plan {key} already exists", metadata={"keys": key})
    plan = res.ComputePlan(
        key=key,
        owner=ctx.org,
        tag=new.tag,
        name=new.name,
        metadata=dict(new.metadata),
        metadata_order=list(new.metadata),
        creation_date=timestamp(ctx.now),
        status=res.PLAN_STATUS_CREATED,
        creator=new.creator,
    )
    ctx.store.add_plan(plan)
    ctx.emit(res.ASSET_COMPUTE_PLAN, key, ev.EVENT_ASSET_CREATED, plan)
    return plan


def get_plan(ctx: Context, key: str, *, for_update: bool = False) -> res.ComputePlan:
    """A plan of the channel, or NOT_FOUND; cached in the context when locked for update."""
    key = validate_key("key", key)
    if key in ctx.plans:
        return ctx.plans[key]
    plan = ctx.store.get_plan(key, for_update=for_update)
    if plan is None:
        raise NotFound(f"compute plan {key} not found")
    if for_update:
        ctx.plans[key] = plan
    return plan


def _owned(ctx: Context, key: str, verb: str) -> res.ComputePlan:
    plan = get_plan(ctx, key, for_update=True)
    if plan.owner != ctx.org:
        raise PermissionDenied(f"only {plan.owner} may {verb} compute plan {plan.key}")
    return plan


def update_plan(ctx: Context, key: str, name: str) -> res.ComputePlan:
    """Rename a plan (owner only)."""
    v = Violations()
    v.name("name", name)
    v.raise_if_any()
    plan = _owned(ctx, key, "rename")
    plan.name = name
    ctx.dirty_plans.add(plan.key)
    ctx.emit(res.ASSET_COMPUTE_PLAN, plan.key, ev.EVENT_ASSET_UPDATED, plan, "plan renamed")
    return plan


def is_terminated(plan: res.ComputePlan) -> bool:
    """Canceled or failed: nothing more will be scheduled."""
    return plan.HasField("cancelation_date") or plan.HasField("failure_date")


def cancel_plan(ctx: Context, key: str) -> res.ComputePlan:
    """Cancel a plan (owner only): set its cancelation date and cancel every task not yet final.

    Substra only sets the date and leaves tasks to be skipped lazily; canceling the tasks here
    makes the cancel visible at once and lets compute stop what is running (domain §8).
    """
    from services.asset.domain import tasks  # the task rules import this module too

    plan = _owned(ctx, key, "cancel")
    if is_terminated(plan):
        state = "canceled" if plan.HasField("cancelation_date") else "failed"
        raise FailedPrecondition(f"compute plan {plan.key} is already {state}", reason="PLAN_TERMINATED")
    plan.cancelation_date.CopyFrom(timestamp(ctx.now))
    ctx.dirty_plans.add(plan.key)
    ctx.emit(res.ASSET_COMPUTE_PLAN, plan.key, ev.EVENT_ASSET_UPDATED, plan, "plan canceled")
    keys = [task.key for task in ctx.store.tasks_of_plan(plan.key, non_final=True)]
    tasks.cancel_all(ctx, keys, "compute plan canceled")
    return plan


# ------------------------------------------------------------------------------------ derived fields
def count(plan: res.ComputePlan, old: int | None, new: int | None) -> None:
    """Move one task between counters (``old`` None: a new task; ``new`` None: never)."""
    if old is None:
        plan.task_count += 1
    else:
        setattr(plan, COUNTER[old], getattr(plan, COUNTER[old]) - 1)
    if new is not None:
        setattr(plan, COUNTER[new], getattr(plan, COUNTER[new]) + 1)


def derive(plan: res.ComputePlan, now: dt.datetime) -> None:
    """Recompute status, start and end dates from the counters and dates (no task is read)."""
    final = sum(getattr(plan, c) for c in FINAL_COUNTERS)
    if plan.HasField("cancelation_date"):
        status = res.PLAN_STATUS_CANCELED
    elif plan.failed_count or plan.HasField("failure_date"):
        status = res.PLAN_STATUS_FAILED
    elif plan.canceled_count:
        status = res.PLAN_STATUS_CANCELED
    elif plan.task_count == plan.waiting_builder_slot_count:
        status = res.PLAN_STATUS_CREATED
    elif plan.done_count == plan.task_count:
        status = res.PLAN_STATUS_DONE
    else:
        status = res.PLAN_STATUS_DOING
    plan.status = status
    if status != res.PLAN_STATUS_CREATED and not plan.HasField("start_date"):
        plan.start_date.CopyFrom(timestamp(now))
    if plan.HasField("cancelation_date"):
        plan.end_date.CopyFrom(plan.cancelation_date)
    elif plan.task_count and final == plan.task_count:
        if not plan.HasField("end_date"):
            plan.end_date.CopyFrom(timestamp(now))
    else:
        plan.ClearField("end_date")


def present(plan: res.ComputePlan, now: dt.datetime) -> res.ComputePlan:
    """Fill the read-time fields: duration (0 until the plan starts: Substra's value, which clients
    compare across organizations) and estimated end date."""
    plan.duration = 0
    if plan.HasField("start_date"):
        start = plan.start_date.ToDatetime(dt.UTC)
        end = plan.end_date.ToDatetime(dt.UTC) if plan.HasField("end_date") else now
        plan.duration = max(0, int((end - start).total_seconds()))
        if plan.HasField("end_date"):
            plan.estimated_end_date.CopyFrom(plan.end_date)
        elif plan.status == res.PLAN_STATUS_DOING and plan.done_count:
            per_task = (now - start) / plan.done_count
            remaining = plan.task_count - plan.done_count - plan.canceled_count - plan.failed_count
            plan.estimated_end_date.CopyFrom(timestamp(now + per_task * remaining))
    return plan
