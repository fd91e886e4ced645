"""The end of every write of the ledger, before its transaction commits.

The rules change tasks and plan counters as they go and queue events in the context; here the plans
they touched get their derived status and dates (with one event for each plan whose status moved),
and then every queued event is appended, in the order it was queued.
"""

from __future__ import annotations

from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import plans
from services.asset.domain.common import Context


def commit(ctx: Context) -> None:
    """Derive and save the plans the write touched (in key order), then append its events."""
    for key in sorted(ctx.dirty_plans):
        plan = ctx.plans[key] if key in ctx.plans else ctx.store.get_plan(key, for_update=True)
        before = plan.status
        plans.derive(plan, ctx.now)
        ctx.store.update_plan(plan)
        if plan.status != before:
            ctx.emit(
                res.ASSET_COMPUTE_PLAN,
                plan.key,
                ev.EVENT_ASSET_UPDATED,
                plan,
                f"status {res.ComputePlanStatus.Name(plan.status)}",
                status_change=(before, plan.status),
            )
    ctx.store.append_events(ctx.events)
