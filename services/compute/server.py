"""gRPC handlers of the compute service (what this organization's executor is doing; cancel): they
translate protobuf to calls of the runs and the domain, and back."""

from __future__ import annotations

import logging

from tessera.compute.v1 import compute_service_pb2 as api
from tessera.compute.v1 import compute_service_pb2_grpc as api_grpc

from services.compute.domain import listing
from services.compute.domain.runs import Run
from services.compute.runs import Runs
from services.kit.errors import PermissionDenied
from services.kit.identity import current_caller

log = logging.getLogger("tessera.compute.server")


def _running(run: Run) -> api.RunningTask:
    message = api.RunningTask(
        compute_task_key=run.key,
        compute_plan_key=run.plan_key,
        function_key=run.function_key,
        channel=run.channel,
        step=run.step,
    )
    message.start_time.FromDatetime(run.started)
    return message


class ComputeService(api_grpc.ComputeServiceServicer):
    """Status and control of this organization's executor (``runs`` is None when the worker is off)."""

    def __init__(self, org_id: str, slots: int, executor: str, runs: Runs | None) -> None:
        self._org = org_id
        self._slots = slots
        self._executor = executor
        self._runs = runs

    def _all(self) -> list[Run]:
        return list(self._runs.running.values()) if self._runs else []

    async def GetStatus(self, request, context):
        running = self._all()
        return api.GetStatusResponse(
            slots_total=self._slots,
            slots_busy=len(running),
            running_tasks=[_running(run) for run in running],
            executor=self._executor,
        )

    async def ListRunningTasks(self, request, context):
        page = listing.running_page(
            self._all(),
            plan_key=request.compute_plan_key,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return api.ListRunningTasksResponse(
            running_tasks=[_running(run) for run in page.runs],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    async def CancelTask(self, request, context):
        if current_caller().org_id != self._org:
            raise PermissionDenied("only this organization's own services may cancel its tasks")
        canceled = await self._runs.cancel(request.compute_task_key) if self._runs else False
        if canceled:
            log.info("task %s canceled: %s", request.compute_task_key, request.reason or "no reason given")
        return api.CancelTaskResponse(canceled=canceled)

    async def FetchAhead(self, request, context):
        if current_caller().org_id != self._org:
            raise PermissionDenied("only this organization's own services may ask it to fetch ahead")
        if self._runs is None:
            return api.FetchAheadResponse(started=False)
        started = self._runs.fetch_ahead(
            request.channel, request.compute_plan_key, request.compute_task_key, [request.model]
        )
        return api.FetchAheadResponse(started=started > 0)
