"""The reconciler's decisions: which stranded tasks to re-queue, which local runs the ledger has ended."""

from __future__ import annotations

import datetime as dt

from tessera.asset.v1 import resources_pb2 as res

from services.compute.domain import reconcile
from services.compute.domain.reconcile import Listed, Reconciliation, cancel_candidates, ended
from services.compute.domain.runs import Run

PATIENCE = 30.0
T0 = 1000.0


def _listed(*keys: str, channel: str = "mychannel") -> list[Listed]:
    return [Listed(key, "plan", channel) for key in keys]


def test_a_stranded_task_is_requeued_only_once_it_stayed_idle_for_the_patience():
    reconciliation = Reconciliation(PATIENCE)
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=T0) == []  # first seen idle
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=T0 + PATIENCE - 1) == []
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=T0 + PATIENCE) == _listed("a")


def test_a_requeued_task_counts_as_queued_and_is_not_requeued_again_at_once():
    reconciliation = Reconciliation(PATIENCE)
    reconciliation.to_requeue(_listed("a"), running=set(), now=T0)
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=T0 + PATIENCE) == _listed("a")
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=T0 + PATIENCE + 1) == []
    # Still idle a patience after its re-queue (that message was lost too): first seen again, then re-queued.
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=T0 + 2 * PATIENCE + 1) == []
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=T0 + 3 * PATIENCE + 1) == _listed("a")


def test_a_task_running_here_is_never_requeued():
    reconciliation = Reconciliation(PATIENCE)
    for now in (T0, T0 + PATIENCE, T0 + 5 * PATIENCE):
        assert reconciliation.to_requeue(_listed("a"), running={"a"}, now=now) == []


def test_a_task_whose_work_was_received_recently_is_left_alone():
    reconciliation = Reconciliation(PATIENCE)
    reconciliation.to_requeue(_listed("a"), running=set(), now=T0)
    received = T0 + PATIENCE - 1
    reconciliation.received("a", received)
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=T0 + PATIENCE) == []
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=received + PATIENCE - 0.5) == []
    # A patience after that message it still does not run here: the message was lost as well.
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=received + PATIENCE) == _listed("a")


def test_a_task_that_moved_on_starts_afresh_when_listed_again():
    reconciliation = Reconciliation(PATIENCE)
    reconciliation.to_requeue(_listed("a"), running=set(), now=T0)
    reconciliation.to_requeue([], running=set(), now=T0 + 1)  # no longer listed: forgotten
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=T0 + PATIENCE) == []
    assert reconciliation.to_requeue(_listed("a"), running=set(), now=T0 + 2 * PATIENCE) == _listed("a")


def test_tasks_of_every_channel_are_weighed_in_one_pass():
    reconciliation = Reconciliation(PATIENCE)
    listed = _listed("a", channel="one") + _listed("b", channel="two")
    reconciliation.to_requeue(listed, running=set(), now=T0)
    assert reconciliation.to_requeue(listed, running=set(), now=T0 + PATIENCE) == listed


def _run(key: str, step: str, claimed: float = T0, canceled: bool = False) -> Run:
    started = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return Run(key, "mychannel", started=started, claimed=claimed, plan_key="plan", step=step, canceled=canceled)


def test_a_started_run_the_ledger_no_longer_lists_is_a_candidate_to_stop():
    runs = [_run("gone", "task_execution"), _run("kept", "task_execution"), _run("fetching", "prepare_inputs")]
    candidates = cancel_candidates(_listed("kept"), runs, listing_began=T0 + 1)
    assert [run.key for run in candidates] == ["gone", "fetching"]


def test_runs_the_listing_cannot_judge_are_never_candidates():
    runs = [
        _run("claimed-after-the-listing-began", "task_execution", claimed=T0 + 2),
        _run("not-started-yet", "queued"),
        _run("recording-its-outcome", "save_outputs"),
        _run("already-canceled", "task_execution", canceled=True),
    ]
    assert cancel_candidates([], runs, listing_began=T0 + 1) == []


def test_only_a_final_task_is_ended():
    assert [status for status in res.ComputeTaskStatus.values() if ended(res.ComputeTask(status=status))] == sorted(
        [res.STATUS_DONE, res.STATUS_CANCELED, res.STATUS_FAILED]
    )


def test_at_start_the_executing_tasks_nothing_runs_are_resumed():
    listed = [
        Listed("a", "plan", "ch", res.STATUS_EXECUTING),
        Listed("b", "plan", "ch", res.STATUS_WAITING_FOR_EXECUTOR_SLOT),
        Listed("c", "plan", "ch", res.STATUS_EXECUTING),
    ]
    assert [t.key for t in reconcile.to_resume(listed, running={"c"})] == ["a"]
