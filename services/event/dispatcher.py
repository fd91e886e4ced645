"""Turn ledger events into work for this organization's compute service.

Every decision is taken from the ledger's *current* state, never from the event's snapshot
alone, so replaying any part of the history changes nothing: a task already running, done or
canceled is not queued again, a function already built is not rebuilt. Work messages carry a
stable ``Nats-Msg-Id`` (``run:<task>``...) so that JetStream drops a repeat inside its window,
and compute checks the ledger again before acting.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import grpc
from nats.js import JetStreamContext
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.asset.v1 import events_pb2 as ev
from tessera.asset.v1 import resources_pb2 as res
from tessera.compute.v1 import compute_service_pb2 as compute_api
from tessera.compute.v1 import compute_service_pb2_grpc as compute_grpc
from tessera.compute.v1 import work_pb2
from tessera.storage.v1 import storage_pb2
from tessera.storage.v1 import storage_service_pb2 as storage_api
from tessera.storage.v1 import storage_service_pb2_grpc as storage_grpc

from services.kit import subjects
from services.kit.status import status_details

log = logging.getLogger("tessera.event.dispatch")

FINAL = {res.STATUS_DONE, res.STATUS_FAILED, res.STATUS_CANCELED}
PLAN_ENDED = {res.PLAN_STATUS_DONE, res.PLAN_STATUS_FAILED, res.PLAN_STATUS_CANCELED}
# Refusals that mean "someone already did it": the decision was right, the state moved on.
SETTLED = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS}
KNOWN_TASKS = 50_000  # tasks whose outputs the dispatcher remembers (a few hundred bytes each)


@dataclass
class Decision:
    """What was done for one event (for logs and tests)."""

    action: str
    key: str


class Dispatcher:
    """Decides, for each ledger event of a channel, what this organization must do."""

    def __init__(
        self,
        org: str,
        channel: str,
        ledger: asset_grpc.AssetServiceStub,
        compute: compute_grpc.ComputeServiceStub | None,
        js: JetStreamContext | None,
        storage: storage_grpc.StorageServiceStub | None = None,
    ) -> None:
        self.org = org
        self.channel = channel
        self._known: OrderedDict[str, tuple[str, dict[str, bool]]] = OrderedDict()
        self.ledger = ledger
        self.compute = compute
        self.js = js
        self.storage = storage

    async def handle(self, event: ev.Event) -> list[Decision]:
        """Act on one event; returns what was decided."""
        kind = event.WhichOneof("asset")
        if kind == "function" and event.function.owner == self.org:
            return await self._function(event.function.key)
        if kind == "compute_task":
            return await self._task(event, event.compute_task)
        if kind == "model" and event.event_kind == ev.EVENT_ASSET_DISABLED and event.model.owner == self.org:
            return await self._delete_model(event.model.key)
        if kind == "compute_plan" and event.compute_plan.status in PLAN_ENDED:
            return await self._publish(
                "teardown",
                f"teardown:{event.asset_key}",
                work_pb2.Teardown(compute_plan_key=event.asset_key, channel=self.channel, event_id=event.id),
            )
        return []

    async def _publish(self, kind: str, msg_id: str, message) -> list[Decision]:
        if self.js is None:
            return []
        await self.js.publish(
            subjects.work_subject(self.org, kind), message.SerializeToString(), headers={"Nats-Msg-Id": msg_id}
        )
        return [Decision(kind, msg_id.split(":", 1)[1])]

    async def _delete_model(self, key: str) -> list[Decision]:
        """A disabled model's bytes are deleted from this organization's storage (Substra does the same)."""
        if self.storage is None:
            return []
        request = storage_api.DeleteFileRequest(
            ref=storage_pb2.FileRef(kind=storage_pb2.FILE_KIND_MODEL, asset_key=key)
        )
        try:
            await self.storage.DeleteFile(request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return []
        return [Decision("delete-model", key)]

    async def _function(self, key: str) -> list[Decision]:
        function = (await self.ledger.GetFunction(asset_api.GetFunctionRequest(key=key))).function
        if function.status != res.FUNCTION_STATUS_WAITING:
            return []
        return await self._publish(
            "build", f"build:{key}", work_pb2.BuildFunction(function_key=key, channel=self.channel)
        )

    def _remember(self, task: res.ComputeTask) -> None:
        """A task's worker and which outputs are transient: fixed at registration, so every event of a
        task tells them, and a consumer's end need not read its parents again."""
        self._known[task.key] = (task.worker, {name: out.transient for name, out in task.outputs.items()})
        self._known.move_to_end(task.key)
        while len(self._known) > KNOWN_TASKS:
            self._known.popitem(last=False)

    async def _outputs_of(self, key: str) -> tuple[str, dict[str, bool]]:
        if key not in self._known:
            self._remember((await self.ledger.GetTask(asset_api.GetTaskRequest(key=key))).task)
        return self._known[key]

    async def _task(self, event: ev.Event, snapshot: res.ComputeTask) -> list[Decision]:
        self._remember(snapshot)
        decisions: list[Decision] = []
        if snapshot.worker == self.org:
            if snapshot.status == res.STATUS_WAITING_FOR_EXECUTOR_SLOT:
                decisions += await self._queue(snapshot, event)
            if snapshot.status == res.STATUS_CANCELED and self.compute is not None:
                reply = await self.compute.CancelTask(
                    compute_api.CancelTaskRequest(
                        compute_task_key=snapshot.key, reason=event.metadata.get("reason", "")
                    )
                )
                if reply.canceled:
                    decisions.append(Decision("cancel", snapshot.key))
        if event.event_kind == ev.EVENT_ASSET_UPDATED and snapshot.status in FINAL:
            decisions += await self._disable_transient_parents(snapshot)
        return decisions

    async def _queue(self, task: res.ComputeTask, event: ev.Event) -> list[Decision]:
        """Queue the run of a task the event shows ready, without reading the ledger again: compute's
        StartTask decides on the current state (a task that moved on is refused, one of a canceled or
        failed plan is canceled), and the message id keeps one run message per task."""
        return await self._publish(
            "run",
            f"run:{task.key}",
            work_pb2.RunTask(
                compute_task_key=task.key,
                compute_plan_key=task.compute_plan_key,
                channel=self.channel,
                event_id=event.id,
            ),
        )

    async def _disable_transient_parents(self, finished: res.ComputeTask) -> list[Decision]:
        """Once a consumer is final, the transient outputs it read may be disabled (domain §2.5);
        the ledger refuses while another consumer still needs them, which is fine."""
        decisions = []
        refs = {
            (i.parent_task_output.parent_task_key, i.parent_task_output.output_identifier)
            for i in finished.inputs
            if i.WhichOneof("ref") == "parent_task_output"
        }
        for parent_key, identifier in sorted(refs):
            worker, transient = await self._outputs_of(parent_key)
            if worker != self.org or not transient.get(identifier, False):
                continue
            done = await self._settle(
                self.ledger.DisableOutput(
                    asset_api.DisableOutputRequest(compute_task_key=parent_key, identifier=identifier)
                )
            )
            if done:
                decisions.append(Decision("disable", f"{parent_key}|{identifier}"))
        return decisions

    @staticmethod
    async def _settle(call) -> bool:
        """Await a ledger action; a refusal because the state moved on is not an error."""
        try:
            await call
            return True
        except grpc.aio.AioRpcError as exc:
            if exc.code() in SETTLED:
                log.debug("ledger refused: %s", status_details(exc).message)
                return False
            raise
