"""The reconciler: every ``TESSERA_RECONCILE_SECONDS``, compares the ledger with what runs here,
re-queues this worker's stranded tasks and stops the runs the ledger has ended (the decisions are
:mod:`services.compute.domain.reconcile`'s). Substra's "scheduler restarting hanging tasks", done on
the ledger's state.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.js import JetStreamContext
from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import work_pb2

from services.compute.domain import reconcile
from services.compute.domain.reconcile import Listed, Reconciliation
from services.compute.ledger import Ledger
from services.compute.runs import Runs
from services.kit import background, subjects

log = logging.getLogger("tessera.compute.reconciler")

LISTED_STATUSES = [res.STATUS_WAITING_FOR_EXECUTOR_SLOT, res.STATUS_EXECUTING]


class Reconciler:
    """Keeps this worker's runs in line with the ledger."""

    def __init__(
        self,
        org_id: str,
        channels: list[str],
        ledger: Ledger,
        runs: Runs,
        js: JetStreamContext,
        reconciliation: Reconciliation,
        period: float,
    ) -> None:
        self._org = org_id
        self._channels = channels
        self._ledger = ledger
        self._runs = runs
        self._js = js
        self._reconciliation = reconciliation
        self._period = period
        self._loop: asyncio.Task | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._forever(), name="reconciler")

    async def _list(self) -> list[Listed]:
        listed = []
        for channel in self._channels:
            for task in await self._ledger.tasks(channel, self._org, LISTED_STATUSES):
                listed.append(Listed(task.key, task.compute_plan_key, channel, task.status))
        return listed

    async def _requeue(self, task: Listed, message_id: str) -> None:
        message = work_pb2.RunTask(compute_task_key=task.key, compute_plan_key=task.plan_key, channel=task.channel)
        await self._js.publish(
            subjects.work_subject(self._org, "run"), message.SerializeToString(), headers={"Nats-Msg-Id": message_id}
        )

    async def resume(self) -> list[str]:
        """Once, at start: run again at once the tasks this worker's previous process was executing."""
        resumed = []
        boot = int(time.time())
        for task in reconcile.to_resume(await self._list(), set(self._runs.running)):
            self._reconciliation.received(task.key, time.monotonic())
            await self._requeue(task, f"resume:{task.key}:{boot}")
            log.info("task %s was executing when this worker stopped: run again now", task.key)
            resumed.append(task.key)
        return resumed

    async def stop(self) -> None:
        await background.cancel(self._loop)

    async def _forever(self) -> None:
        try:
            await self.resume()
        except Exception:
            log.warning("resuming the tasks of the previous process failed; the next passes will", exc_info=True)
        while True:
            await asyncio.sleep(self._period)
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("reconciliation failed", exc_info=True)

    async def reconcile(self) -> tuple[list[str], list[str]]:
        """One pass; returns the keys of the tasks re-queued and of the runs stopped."""
        began = time.monotonic()
        listed = await self._list()
        canceled = []
        for run in reconcile.cancel_candidates(listed, list(self._runs.running.values()), began):
            task = await self._ledger.task(run.channel, run.key)
            if reconcile.ended(task) and await self._runs.cancel(run.key):
                log.info("task %s stopped: the ledger has ended it", run.key)
                canceled.append(run.key)
        requeued = []
        for task in self._reconciliation.to_requeue(listed, set(self._runs.running), time.monotonic()):
            await self._requeue(task, f"reconcile:{task.key}:{int(time.time())}")
            requeued.append(task.key)
        if requeued:
            log.info("reconciler re-queued %d task(s)", len(requeued))
        return requeued, canceled
