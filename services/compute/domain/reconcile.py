"""The reconciler's decisions: which of this worker's tasks to re-queue, which local runs to stop.

The ledger is the truth. Each pass lists the tasks the ledger holds WAITING_FOR_EXECUTOR_SLOT or
EXECUTING on this worker and compares them with the runs here:

- A listed task that nothing runs here is *stranded* (its message was lost with a crashed worker,
  or refused while the ledger was away) and is re-queued; but only once it was neither queued nor
  received within ``patience`` (the work messages' ack wait) and was already idle on a pass at
  least ``patience`` earlier: a task that has just become runnable has its message in flight from
  the event service, and a second copy would only cost a ledger round trip before being skipped.
- At start (:func:`to_resume`), the tasks EXECUTING on this worker are those the previous process was
  running when it died: they are re-queued at once.
- A run here whose task the ledger no longer lists may have been ended elsewhere (canceled or
  failed while the cancel did not reach this worker): a candidate, if it was claimed before the
  listing began (a newer one may have become runnable since), the ledger has started it, and its
  outcome is not being recorded now (``save_outputs``: the ledger's answer settles it). A candidate
  is stopped once the ledger, asked for that one task, has it final (a listing read in pages can
  miss a task that moved meanwhile; a single read cannot).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from tessera.asset.v1 import resources_pb2 as res

from services.compute.domain.runs import QUEUED, Run

SETTLING = "save_outputs"
FINAL = frozenset({res.STATUS_DONE, res.STATUS_CANCELED, res.STATUS_FAILED})


@dataclass(frozen=True)
class Listed:
    """A task the ledger lists as this worker's, runnable or running."""

    key: str
    plan_key: str
    channel: str  # the channel it was listed in
    status: int = res.STATUS_UNKNOWN


class Reconciliation:
    """What the reconciler remembers from one pass to the next (times on a monotonic clock)."""

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self._queued_at: dict[str, float] = {}  # task key → when its work was last queued or received
        self._idle_since: dict[str, float] = {}  # task key → when a pass first saw it stranded

    def received(self, task_key: str, now: float) -> None:
        """Work for ``task_key`` was received (or published) at ``now``."""
        self._queued_at[task_key] = now

    def to_requeue(self, listed: Iterable[Listed], running: Collection[str], now: float) -> list[Listed]:
        """The stranded tasks to re-queue now (they count as queued from ``now``)."""
        listed = list(listed)
        horizon = now - self.patience
        self._queued_at = {key: at for key, at in self._queued_at.items() if at > horizon}  # bounded
        keys = {task.key for task in listed}
        self._idle_since = {key: since for key, since in self._idle_since.items() if key in keys}  # moved on
        requeue = []
        for task in listed:
            if task.key in running or task.key in self._queued_at:
                continue
            since = self._idle_since.setdefault(task.key, now)
            if now - since < self.patience:
                continue
            del self._idle_since[task.key]
            self._queued_at[task.key] = now
            requeue.append(task)
        return requeue


def cancel_candidates(listed: Iterable[Listed], runs: Iterable[Run], listing_began: float) -> list[Run]:
    """The local runs the ledger may have ended (see the module's description)."""
    keys = {task.key for task in listed}
    return [
        run
        for run in runs
        if run.key not in keys
        and run.claimed < listing_began
        and run.step not in (QUEUED, SETTLING)
        and not run.canceled
    ]


def ended(task: res.ComputeTask) -> bool:
    """Whether the ledger has ended ``task``: a run of it here has nothing left to do."""
    return task.status in FINAL


def to_resume(listed: Iterable[Listed], running: Collection[str]) -> list[Listed]:
    """At start, the tasks the ledger has EXECUTING on this worker that nothing here runs: the previous
    process of this worker was running them when it died (one compute per organization), so they are
    run again at once rather than after their work message's ack wait."""
    return [task for task in listed if task.status == res.STATUS_EXECUTING and task.key not in running]
