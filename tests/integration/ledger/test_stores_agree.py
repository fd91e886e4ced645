"""The in-memory store and the PostgreSQL one agree: the same rule scenarios, run through the domain on
each (same keys, same clock), write the same events and leave the same tasks and plans.

The rule unit tests (``tests/unit/asset``) run on the in-memory store only; this is what lets them
stand for the ledger that serves the API."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain import outputs, plans, tasks, work
from services.asset.domain.commit import commit
from services.asset.domain.common import Context
from services.asset.store.repositories import Repositories
from services.kit import db
from services.kit.identity import Caller
from tests.unit.asset.conftest import CHAIN_IO, ORG1, ORG2, ORG3, Ledger, MemoryUnits, from_parent, public

MANY_MODELS = res.FunctionOutput(kind=res.ASSET_MODEL, multiple=True)


class SqlUnits:
    """Units of work on PostgreSQL, as the server runs them (serializable writes ending in ``commit``)."""

    def __init__(self, engines) -> None:
        writes, reads = engines
        self._writes = db.UnitOfWork(writes, repositories=Repositories, serializable=True)
        self._reads = db.UnitOfWork(reads, repositories=Repositories)

    def write(self, caller: Caller, now: dt.datetime, work: Callable[[Context], object]):
        def unit(repositories: Repositories):
            ctx = Context(caller=caller, now=now, store=repositories.store(caller.channel))
            result = work(ctx)
            commit(ctx)
            return result

        return self._writes.run_sync(unit)

    def read(self, caller: Caller, now: dt.datetime, work: Callable[[Context], object]):
        return self._reads.run_sync(
            lambda repositories: work(Context(caller=caller, now=now, store=repositories.store(caller.channel)))
        )

    def events(self, channel: str) -> list[ev.Event]:
        return self._reads.run_sync(lambda repositories: repositories.outbox().events_after(channel, 0, 100_000))


@pytest.fixture(scope="module")
def engines(ledger):
    """The package ledger's database, for writes and for reads (each run below takes a channel of its own)."""
    writes = db.create_engine(ledger.database_url, "asset", pool_size=2, serializable=True)
    reads = db.create_engine(ledger.database_url, "asset", pool_size=2)
    yield writes, reads
    writes.dispose()
    reads.dispose()


# ------------------------------------------------------------------------------------ scenarios
def diamond_run_to_the_end(ledger: Ledger) -> dict:
    plan, function = ledger.compute_plan(), ledger.function()
    root = ledger.add_task(plan, function)
    left = ledger.add_task(plan, function, [from_parent(root.key)], worker=ORG2)
    right = ledger.add_task(plan, function, [from_parent(root.key)], worker=ORG3)
    join = ledger.add_task(plan, function, [from_parent(left.key), from_parent(right.key)])
    for step in (root, left, right, join):
        ledger.later(10)
        ledger.run(ledger.task(step.key))
    return {"plan": plan.key, "tasks": [root.key, left.key, right.key, join.key]}


def failure_then_cancel(ledger: Ledger) -> dict:
    plan, function = ledger.compute_plan(), ledger.function()
    root = ledger.add_task(plan, function)
    child = ledger.add_task(plan, function, [from_parent(root.key)])
    other = ledger.add_task(plan, function, worker=ORG2)
    ledger.act(ORG2, other.key, res.TASK_ACTION_EXECUTING)
    ledger.later(5)
    ledger.act(ORG1, root.key, res.TASK_ACTION_EXECUTING)
    ledger.act(ORG1, root.key, res.TASK_ACTION_FAILED)
    return {"plan": plan.key, "tasks": [root.key, child.key, other.key]}


def build_failure(ledger: Ledger) -> dict:
    plan = ledger.compute_plan()
    broken, fine = ledger.function(built=False), ledger.function()
    waiting = ledger.add_task(plan, broken)
    ledger.function_action(ORG1, broken.key, res.FUNCTION_ACTION_BUILDING)
    downstream = ledger.add_task(plan, fine, [from_parent(waiting.key)])
    logs = ledger.address("logs")
    ledger.later(3)
    ledger.write(
        ORG1,
        lambda ctx: outputs.register_failure_report(ctx, broken.key, res.FAILED_ASSET_FUNCTION, res.BUILD_ERROR, logs),
    )
    return {"plan": plan.key, "tasks": [waiting.key, downstream.key]}


def transient_output_disabled_then_plan_canceled(ledger: Ledger) -> dict:
    plan, function = ledger.compute_plan(), ledger.function()
    transient = tasks.NewTaskOutput(permissions=public(), transient=True)
    parent = ledger.add_task(plan, function, model=transient)
    child = ledger.add_task(plan, function, [from_parent(parent.key)])
    waiting = ledger.add_task(plan, function, [from_parent(child.key)])
    ledger.run(parent)
    ledger.act(ORG1, child.key, res.TASK_ACTION_EXECUTING)
    ledger.produce(ledger.task(child.key))
    ledger.act(ORG1, child.key, res.TASK_ACTION_CANCELED)
    ledger.write(ORG1, lambda ctx: outputs.disable_output(ctx, parent.key, "model"))
    ledger.later(7)
    ledger.write(ORG1, lambda ctx: plans.cancel_plan(ctx, plan.key))
    return {"plan": plan.key, "tasks": [parent.key, child.key, waiting.key]}


def fan_out_and_in(ledger: Ledger) -> dict:
    """A round of federated learning: one DONE releases a task on each organization at once (written
    together), each produces two models under a multiple output, and the aggregation of all ends the plan."""
    plan, function = ledger.compute_plan(), ledger.function()
    several = ledger.function(io={**CHAIN_IO, "outputs": {"models": MANY_MODELS}})
    root = ledger.add_task(plan, function)
    trainings = [ledger.add_task(plan, several, [from_parent(root.key)], worker=org) for org in (ORG2, ORG3, ORG1)]
    aggregation = ledger.add_task(plan, function, [from_parent(t.key, output="models") for t in trainings])
    ledger.run(root)
    for training in trainings:
        ledger.later(2)
        ledger.act(training.worker, training.key, res.TASK_ACTION_EXECUTING)
        made = [outputs.NewModel(ledger.key(), training.key, "models", ledger.address("model")) for _ in range(2)]
        ledger.write(training.worker, lambda ctx, made=made: outputs.register_models(ctx, made))
        ledger.act(training.worker, training.key, res.TASK_ACTION_DONE)
    ledger.run(ledger.task(aggregation.key))
    return {"plan": plan.key, "tasks": [root.key, *(t.key for t in trainings), aggregation.key]}


SCENARIOS = {
    "diamond": (diamond_run_to_the_end, res.PLAN_STATUS_DONE),
    "fan out and in": (fan_out_and_in, res.PLAN_STATUS_DONE),
    "failure": (failure_then_cancel, res.PLAN_STATUS_FAILED),
    "build failure": (build_failure, res.PLAN_STATUS_FAILED),
    "transient and cancel": (transient_output_disabled_then_plan_canceled, res.PLAN_STATUS_CANCELED),
}


def outcome(ledger: Ledger, scenario) -> tuple[list[ev.Event], list[res.ComputeTask], res.ComputePlan]:
    ledger.join(ORG1, ORG2, ORG3)
    keys = scenario(ledger)
    events = ledger.events()
    for event in events:  # what differs by construction: random ids, and the channel of each run
        event.ClearField("id")
        event.ClearField("channel")
    return events, [ledger.task(key) for key in keys["tasks"]], ledger.plan(keys["plan"])


@pytest.mark.parametrize("name", SCENARIOS)
def test_both_stores_write_the_same_events_and_state(engines, name):
    scenario, final = SCENARIOS[name]
    in_memory = outcome(Ledger(MemoryUnits()), scenario)
    on_sql = outcome(Ledger(SqlUnits(engines), channel=f"agree-{uuid.uuid4().hex[:8]}"), scenario)
    memory_events, memory_tasks, memory_plan = in_memory
    sql_events, sql_tasks, sql_plan = on_sql
    assert memory_plan.status == final  # the scenario did what it says
    assert len(memory_events) > 10
    assert [e.position for e in sql_events] == list(range(1, len(sql_events) + 1))
    for position, (memory_event, sql_event) in enumerate(zip(memory_events, sql_events, strict=True), start=1):
        assert memory_event == sql_event, f"event {position} differs"
    assert memory_tasks == sql_tasks
    assert memory_plan == sql_plan


class TaskUpdates:
    """The ``UPDATE compute_tasks`` statements the ledger's writes send while in the block."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.sent: list[str] = []

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE COMPUTE_TASKS"):
            self.sent.append(statement)

    def __enter__(self) -> list[str]:
        sa.event.listen(self.engine, "before_cursor_execute", self._seen)
        return self.sent

    def __exit__(self, *exc) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)


def test_transitions_of_one_unit_travel_together_and_reads_see_them(engines):
    """Starts in one unit of work (a group of StartTask calls) are sent as one statement at the commit; a read of
    tasks in between is answered from the database with the kept transitions sent first."""
    ledger = Ledger(SqlUnits(engines), channel=f"group-{uuid.uuid4().hex[:8]}")
    ledger.join(ORG1, ORG2, ORG3)
    plan, function = ledger.compute_plan(), ledger.function()
    ready = [ledger.add_task(plan, function) for _ in range(3)]

    def start_all(ctx: Context) -> list[str]:
        for task in ready:
            work.start_task(ctx, task.key)
        return [t.key for t in ctx.store.tasks_of_plan(plan.key) if t.status == res.STATUS_EXECUTING]

    with TaskUpdates(engines[0]) as sent:
        executing = ledger.write(ORG1, start_all)
    assert executing == [t.key for t in ready]  # the read found what the unit had not sent yet
    assert len(sent) == 1
    with TaskUpdates(engines[0]) as sent:
        ledger.write(ORG1, lambda ctx: [work.start_task(ctx, t.key) for t in ready[:2]])  # restarts: nothing moves
    assert [ledger.status(t.key) for t in ready] == [res.STATUS_EXECUTING] * 3
    assert sent == []


def test_a_done_writes_the_children_it_releases_in_one_statement(engines):
    ledger = Ledger(SqlUnits(engines), channel=f"fan-{uuid.uuid4().hex[:8]}")
    ledger.join(ORG1, ORG2, ORG3)
    plan, function = ledger.compute_plan(), ledger.function()
    root = ledger.add_task(plan, function)
    children = [ledger.add_task(plan, function, [from_parent(root.key)], worker=org) for org in (ORG1, ORG2, ORG3)]
    ledger.act(ORG1, root.key, res.TASK_ACTION_EXECUTING)
    ledger.produce(ledger.task(root.key))
    with TaskUpdates(engines[0]) as updates:
        ledger.act(ORG1, root.key, res.TASK_ACTION_DONE)
    assert [ledger.status(c.key) for c in children] == [res.STATUS_WAITING_FOR_EXECUTOR_SLOT] * 3
    assert len(updates) == 2  # the DONE itself, then the three released children together
