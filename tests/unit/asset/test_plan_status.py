"""A compute plan's status, counters and dates (domain §2.3, with the precedence of ADR 0003): derived
from the counters alone, kept by every task transition, announced by one event when the status moves."""

from __future__ import annotations

import datetime as dt

import pytest
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import plans
from services.asset.domain.common import timestamp
from tests.unit.asset.conftest import ORG1, START, from_parent

NOW = START + dt.timedelta(hours=1)


def plan_with(**fields) -> res.ComputePlan:
    dates = {name: timestamp(fields.pop(name)) for name in list(fields) if name.endswith("_date")}
    return res.ComputePlan(key="p", **fields, **dates)


@pytest.mark.parametrize(
    ("counters", "status"),
    [
        ({}, res.PLAN_STATUS_CREATED),  # no task yet
        ({"task_count": 2, "waiting_builder_slot_count": 2}, res.PLAN_STATUS_CREATED),
        ({"task_count": 2, "waiting_builder_slot_count": 1, "building_count": 1}, res.PLAN_STATUS_DOING),
        ({"task_count": 3, "done_count": 1, "waiting_parent_tasks_count": 2}, res.PLAN_STATUS_DOING),
        ({"task_count": 2, "done_count": 2}, res.PLAN_STATUS_DONE),
        ({"task_count": 3, "done_count": 2, "canceled_count": 1}, res.PLAN_STATUS_CANCELED),
        # ours: a failure outranks the cancels it causes (Substra puts any cancel first)
        ({"task_count": 3, "failed_count": 1, "canceled_count": 2}, res.PLAN_STATUS_FAILED),
        ({"task_count": 2, "failed_count": 1, "executing_count": 1}, res.PLAN_STATUS_FAILED),
    ],
)
def test_status_from_counters(counters, status):
    plan = plan_with(**counters)
    plans.derive(plan, NOW)
    assert plan.status == status


def test_a_canceled_plan_is_canceled_whatever_its_tasks_and_ends_when_canceled():
    plan = plan_with(task_count=2, failed_count=1, executing_count=1, cancelation_date=START)
    plans.derive(plan, NOW)
    assert plan.status == res.PLAN_STATUS_CANCELED
    assert plan.end_date == timestamp(START)


def test_a_failure_date_alone_fails_the_plan():
    plan = plan_with(task_count=1, executing_count=1, failure_date=START)
    plans.derive(plan, NOW)
    assert plan.status == res.PLAN_STATUS_FAILED


def test_start_date_is_set_once_when_the_plan_leaves_created():
    plan = plan_with(task_count=1, waiting_builder_slot_count=1)
    plans.derive(plan, NOW)
    assert not plan.HasField("start_date")
    plan.waiting_builder_slot_count, plan.building_count = 0, 1
    plans.derive(plan, NOW)
    assert plan.start_date == timestamp(NOW)
    plans.derive(plan, NOW + dt.timedelta(minutes=5))
    assert plan.start_date == timestamp(NOW)


def test_end_date_is_set_when_every_task_is_final_and_cleared_when_a_task_is_added():
    plan = plan_with(task_count=2, done_count=1, failed_count=1)
    plans.derive(plan, NOW)
    assert plan.end_date == timestamp(NOW)
    plans.count(plan, None, res.STATUS_WAITING_FOR_EXECUTOR_SLOT)  # the plan is reopened
    assert plan.task_count == 3
    plans.derive(plan, NOW)
    assert not plan.HasField("end_date")


def test_count_moves_one_task_between_counters():
    plan = plan_with(task_count=1, executing_count=1)
    plans.count(plan, res.STATUS_EXECUTING, res.STATUS_DONE)
    assert (plan.task_count, plan.executing_count, plan.done_count) == (1, 0, 1)


def test_presenting_a_running_plan_estimates_its_end_from_the_done_tasks():
    plan = plan_with(task_count=4, done_count=2, executing_count=2, status=res.PLAN_STATUS_DOING, start_date=START)
    plans.present(plan, NOW)
    assert plan.duration == 3600
    # two tasks took an hour: the two left take another hour
    assert plan.estimated_end_date == timestamp(NOW + dt.timedelta(hours=1))


def test_a_plan_that_has_not_started_has_a_duration_of_zero_and_no_estimate():
    plan = plan_with(task_count=2, status=res.PLAN_STATUS_CREATED)
    plans.present(plan, NOW)
    assert plan.HasField("duration") and plan.duration == 0  # shown as 0, not null, as Substra does
    assert not plan.HasField("estimated_end_date")


def test_presenting_a_finished_plan_gives_its_end_as_estimate():
    end = START + dt.timedelta(minutes=10)
    plan = plan_with(task_count=1, done_count=1, status=res.PLAN_STATUS_DONE, start_date=START, end_date=end)
    plans.present(plan, NOW)
    assert plan.duration == 600
    assert plan.estimated_end_date == timestamp(end)


# ------------------------------------------------------------------------- kept by the ledger
def plan_moves(ledger, key: str) -> list[tuple[int, int, str]]:
    return [
        (e.status_change.previous, e.status_change.current, e.metadata["reason"])
        for e in ledger.events()
        if e.asset_key == key and e.event_kind == ev.EVENT_ASSET_UPDATED
    ]


def test_the_ledger_keeps_counters_and_announces_each_status_move(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    parent = ledger.add_task(plan, function)
    child = ledger.add_task(plan, function, [from_parent(parent.key)])
    stored = ledger.plan(plan.key)
    assert (stored.task_count, stored.waiting_executor_slot_count, stored.waiting_parent_tasks_count) == (2, 1, 1)
    assert stored.status == res.PLAN_STATUS_DOING
    assert stored.start_date.ToDatetime(dt.UTC) == START

    ledger.later(60)
    ledger.run(parent)
    ledger.run(ledger.task(child.key))
    stored = ledger.plan(plan.key)
    assert (stored.done_count, stored.status) == (2, res.PLAN_STATUS_DONE)
    assert stored.end_date.ToDatetime(dt.UTC) == ledger.now
    assert plan_moves(ledger, plan.key) == [
        (res.PLAN_STATUS_CREATED, res.PLAN_STATUS_DOING, "status PLAN_STATUS_DOING"),
        (res.PLAN_STATUS_DOING, res.PLAN_STATUS_DONE, "status PLAN_STATUS_DONE"),
    ]


def test_the_plan_event_follows_the_task_events_of_the_same_write(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    task = ledger.add_task(plan, function)
    ledger.act(ORG1, task.key, res.TASK_ACTION_EXECUTING)
    position = ledger.events()[-1].position
    ledger.act(ORG1, task.key, res.TASK_ACTION_FAILED)
    written = [e for e in ledger.events() if e.position > position]
    assert [(e.asset_kind, e.asset_key) for e in written] == [
        (res.ASSET_COMPUTE_TASK, task.key),
        (res.ASSET_COMPUTE_PLAN, plan.key),
    ]
    assert written[1].compute_plan.status == res.PLAN_STATUS_FAILED
    assert [e.position for e in written] == [position + 1, position + 2]


def test_renaming_a_plan_announces_the_rename_but_no_status_move(ledger):
    plan = ledger.compute_plan()
    ledger.write(ORG1, lambda ctx: plans.update_plan(ctx, plan.key, "renamed"))
    assert ledger.plan(plan.key).name == "renamed"
    (renamed,) = [e for e in ledger.events() if e.asset_key == plan.key and e.event_kind == ev.EVENT_ASSET_UPDATED]
    assert renamed.metadata["reason"] == "plan renamed"
    assert not renamed.HasField("status_change")
