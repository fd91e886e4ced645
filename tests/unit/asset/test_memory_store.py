"""The in-memory store answers as the PostgreSQL one does where the rules can tell (``Store`` protocol)."""

from __future__ import annotations

import pytest
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res

from services.asset.domain.common import Store
from services.asset.store.memory import DuplicateKey, MemoryLedger, MemoryStore
from tests.unit.asset.conftest import ORG1, from_parent


def test_it_implements_every_method_of_the_protocol():
    wanted = {name for name in vars(Store) if not name.startswith("_")}
    assert wanted <= set(dir(MemoryStore))


def test_reads_are_fresh_and_updates_write_only_what_may_change(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    task = ledger.add_task(plan, function)
    store = ledger.units.memory.store("mychannel")
    read = store.get_tasks([task.key])[task.key]
    read.status = res.STATUS_EXECUTING
    assert ledger.status(task.key) == res.STATUS_WAITING_FOR_EXECUTOR_SLOT  # not written yet
    read.tag = "changed"
    store.update_tasks([read])
    stored = ledger.task(task.key)
    assert (stored.status, stored.tag) == (res.STATUS_EXECUTING, "")  # the tag is not a column that changes
    assert stored.function.key == function.key  # embedded on read


def test_channels_are_apart():
    memory = MemoryLedger()
    memory.store("a").add_organization(res.Organization(id=ORG1))
    assert memory.store("b").organization_ids() == set()
    for channel in ("a", "b", "a"):
        memory.store(channel).append_events([ev.Event(id=channel)])
    assert [e.position for e in memory.events("a")] == [1, 2]
    assert [e.position for e in memory.events("b")] == [1]


def test_duplicate_keys_fail_and_links_are_idempotent():
    store = MemoryLedger().store("c")
    store.add_organization(res.Organization(id=ORG1))
    with pytest.raises(DuplicateKey):
        store.add_organization(res.Organization(id=ORG1))
    link = res.ComputeTaskOutputAsset(compute_task_key="t", compute_task_output_identifier="m", asset_key="k")
    other = res.ComputeTaskOutputAsset(compute_task_key="t", compute_task_output_identifier="m", asset_key="k2")
    assert store.add_output_assets([link]) == [True]
    assert store.add_output_assets([other, link]) == [True, False]
    step = res.ProfilingStep(asset_key="t", step="s", duration=1)
    assert store.add_profiling_step(step) is True
    assert store.add_profiling_step(step) is False


def test_models_of_an_output_are_the_linked_ones_in_link_order():
    store = MemoryLedger().store("c")
    models = [res.Model(key=k, compute_task_key="t", compute_task_output_identifier="m") for k in ("b", "a", "z")]
    store.add_models(models)
    store.add_output_assets(  # "z" has no link: the SQL join leaves it out
        [
            res.ComputeTaskOutputAsset(compute_task_key="t", compute_task_output_identifier="m", asset_key=k)
            for k in "ab"
        ]
    )
    assert [m.key for m in store.models_of_output("t", "m")] == ["a", "b"]


def test_children_and_parents_done(ledger):
    plan, function = ledger.compute_plan(), ledger.function()
    first, second = ledger.add_task(plan, function), ledger.add_task(plan, function)
    child = ledger.add_task(plan, function, [from_parent(second.key), from_parent(first.key)])
    store: MemoryStore = ledger.units.memory.store("mychannel")
    assert [t.key for t in store.children(first.key)] == [child.key]
    assert store.parents_done(child.key) is False
    ledger.run(first)
    assert store.parents_done(child.key) is False
    ledger.run(second)
    assert store.parents_done(child.key) is True
    assert [t.key for t in store.tasks_of_plan(plan.key, non_final=True)] == [child.key]
    assert len(store.tasks_of_plan(plan.key)) == 3
