"""Task transitions of one plan queued one after another inside the ledger process.

Every transition of a task updates its plan's row (the counters its status derives from), and two
SERIALIZABLE transactions that both update a row conflict: the second to commit is aborted and run
again. With ten organizations completing tasks of one plan at once, most attempts were thrown away
(605 retries in a 10-round, 10-organization FedAvg run). Holding a per-plan lock around the unit of work
makes those transactions wait their turn instead, in this process. The database still decides:
another ledger replica's transactions conflict and are retried as before, so this is an optimization
that correctness never depends on.

The lock is found from the task key: the plan of each task registered or read here is remembered
(a bounded map; a task never changes plan). A task not known yet is looked up once.

The ledger's servicer also commits together the transitions that queued behind one holder (see
``AssetService._task_write``): one transaction, one update of the plan, one allocation of event positions
for all of them, where each took its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable

from tessera.asset.v1 import resources_pb2 as res

KNOWN_TASKS = 100_000


class PlanLocks:
    """One asyncio lock per (channel, plan) in use, and the plans of the tasks seen."""

    def __init__(self, known: int = KNOWN_TASKS) -> None:
        self._known = known
        self._plans: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    def learn(self, channel: str, tasks: Iterable[res.ComputeTask]) -> None:
        for task in tasks:
            self._plans[(channel, task.key)] = task.compute_plan_key
        while len(self._plans) > self._known:
            self._plans.popitem(last=False)

    def plan_of(self, channel: str, task_key: str) -> str | None:
        return self._plans.get((channel, task_key))

    @contextlib.asynccontextmanager
    async def held(self, channel: str, plan_key: str) -> AsyncIterator[None]:
        """Hold the plan's lock; it is dropped once nobody holds or waits for it."""
        key = (channel, plan_key)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
