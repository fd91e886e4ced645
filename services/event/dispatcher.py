"""Carry out the dispatcher's decisions (``services.event.domain.dispatch``) for one channel: publish
work to JetStream, ask compute to cancel a run, storage to delete a model, the ledger to disable
transient outputs.

A work message carries two headers: ``Nats-Msg-Id`` (the organization, the event id and the work kind), so
that JetStream drops a re-publication of the same event inside its duplicate window (and only that: both
organizations' teardowns of one plan are two messages), and the W3C trace context of the
span that handled the event, so that compute continues its trace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from nats.js import JetStreamContext
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.asset.v1 import events_pb2 as ev
from tessera.compute.v1 import compute_service_pb2 as compute_api
from tessera.compute.v1 import compute_service_pb2_grpc as compute_grpc
from tessera.storage.v1 import storage_pb2
from tessera.storage.v1 import storage_service_pb2 as storage_api
from tessera.storage.v1 import storage_service_pb2_grpc as storage_grpc

from services.event.domain.dispatch import (
    Action,
    BuildIfWaiting,
    CancelRun,
    DeleteModel,
    DispatchRules,
    FetchModel,
    ReleaseInputs,
    Work,
)
from services.kit import subjects, telemetry
from services.kit.status import status_details

log = logging.getLogger("tessera.event.dispatch")
FETCH_AHEAD_TIMEOUT = 5.0  # seconds compute may take to start an early download (advisory: then skipped)
tracer = telemetry.tracer("tessera.event")

# Refusals that mean "someone already did it": the decision was right, the state moved on.
SETTLED = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS}


@dataclass(frozen=True)
class Decision:
    """What was done for one event (for logs and tests)."""

    action: str
    key: str


class Dispatcher:
    """Turns each ledger event of a channel into what this organization must do."""

    def __init__(
        self,
        rules: DispatchRules,
        ledger: asset_grpc.AssetServiceStub,
        compute: compute_grpc.ComputeServiceStub | None,
        js: JetStreamContext | None,
        storage: storage_grpc.StorageServiceStub | None = None,
    ) -> None:
        self.rules = rules
        self.ledger = ledger
        self.compute = compute
        self.js = js
        self.storage = storage
        self._fetches: list[FetchModel] = []  # asked by the events of the batch being handled

    async def flush(self) -> list[Decision]:
        """Carry out the early fetches the batch just handled asked for, but those whose reader a later event of
        the batch made ready (its run message names the model): call after each batch of events."""
        fetches, self._fetches = self._fetches, []
        decisions: list[Decision] = []
        for action in fetches:
            reader = self.rules.waiting_readers.still_waiting(action)
            if reader is not None:
                decisions += await self._fetch_ahead(action, *reader)
        return decisions

    async def handle(self, event: ev.Event) -> list[Decision]:
        """Act on one event; returns what was done. When the event asks for something, that happens in a
        span continuing the trace of the ledger call that wrote the event (its context then travels with
        the work to compute)."""
        actions = []
        for action in self.rules.decide(event):
            if isinstance(action, FetchModel):
                self._fetches.append(action)  # at the end of the batch: see flush
            else:
                actions.append(action)
        if not actions:
            return []
        attributes = {
            "tessera.event.id": event.id,
            "tessera.event.position": event.position,
            "tessera.event.kind": ev.EventKind.Name(event.event_kind),
            "tessera.asset.key": event.asset_key,
        }
        parent = telemetry.context_from(event.trace_context)
        with tracer.start_as_current_span("event.dispatch", context=parent, attributes=attributes):
            decisions: list[Decision] = []
            for action in actions:
                decisions += await self._carry_out(action)
            return decisions

    async def _carry_out(self, action: Action) -> list[Decision]:
        if isinstance(action, Work):
            return await self._publish(action)
        if isinstance(action, BuildIfWaiting):
            reply = await self.ledger.GetFunction(asset_api.GetFunctionRequest(key=action.work.key))
            return await self._publish(action.work) if self.rules.needs_build(reply.function) else []
        if isinstance(action, CancelRun):
            return await self._cancel(action)
        if isinstance(action, DeleteModel):
            return await self._delete_model(action.model_key)
        if isinstance(action, ReleaseInputs):
            return await self._release(action)
        raise TypeError(f"unknown action {action!r}")

    async def _publish(self, work: Work) -> list[Decision]:
        if self.js is None:
            return []
        await self.js.publish(
            subjects.work_subject(self.rules.org, work.kind),
            work.message.SerializeToString(),
            headers=telemetry.trace_carrier({"Nats-Msg-Id": work.message_id}),
        )
        return [Decision(work.kind, work.key)]

    async def _cancel(self, action: CancelRun) -> list[Decision]:
        if self.compute is None:
            return []
        request = compute_api.CancelTaskRequest(compute_task_key=action.task_key, reason=action.reason)
        reply = await self.compute.CancelTask(request)
        return [Decision("cancel", action.task_key)] if reply.canceled else []

    async def _fetch_ahead(self, action: FetchModel, task_key: str, plan_key: str) -> list[Decision]:
        """Advisory: a failure costs only the early start of the download (the task fetches its inputs)."""
        if self.compute is None:
            return []
        request = compute_api.FetchAheadRequest(
            compute_plan_key=plan_key,
            compute_task_key=task_key,
            channel=self.rules.channel,
            model=action.model,
        )
        try:
            reply = await self.compute.FetchAhead(request, timeout=FETCH_AHEAD_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            log.info("early fetch of model %s not asked: %s", action.model.key, exc.code().name)
            return []
        return [Decision("fetch", action.model.key)] if reply.started else []

    async def _delete_model(self, key: str) -> list[Decision]:
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

    async def _release(self, action: ReleaseInputs) -> list[Decision]:
        for key in self.rules.unknown_parents(action):
            self.rules.known.remember((await self.ledger.GetTask(asset_api.GetTaskRequest(key=key))).task)
        decisions = []
        for ref in self.rules.to_disable(action):
            request = asset_api.DisableOutputRequest(compute_task_key=ref.task_key, identifier=ref.identifier)
            if await self._settle(self.ledger.DisableOutput(request)):
                decisions.append(Decision("disable", f"{ref.task_key}|{ref.identifier}"))
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
