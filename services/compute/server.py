"""gRPC handlers of the compute service: status, running tasks, cancel."""

from __future__ import annotations

from tessera.compute.v1 import compute_service_pb2 as api
from tessera.compute.v1 import compute_service_pb2_grpc as api_grpc

from services.compute.settings import ComputeSettings
from services.compute.worker import Running, Worker
from services.kit.errors import PermissionDenied
from services.kit.identity import current_caller


def _running(task: Running) -> api.RunningTask:
    message = api.RunningTask(
        compute_task_key=task.key,
        compute_plan_key=task.plan_key,
        function_key=task.function_key,
        channel=task.channel,
        step=task.step,
    )
    message.start_time.FromDatetime(task.started)
    return message


class ComputeService(api_grpc.ComputeServiceServicer):
    """What this organization's executor is doing."""

    def __init__(self, settings: ComputeSettings, worker: Worker | None) -> None:
        self._settings = settings
        self._worker = worker

    def _tasks(self) -> list[Running]:
        return list(self._worker.running.values()) if self._worker else []

    async def GetStatus(self, request, context):
        running = self._tasks()
        return api.GetStatusResponse(
            slots_total=self._settings.slots,
            slots_busy=len(running),
            running_tasks=[_running(t) for t in running],
            executor=self._settings.executor,
        )

    async def ListRunningTasks(self, request, context):
        running = [t for t in self._tasks() if not request.compute_plan_key or t.plan_key == request.compute_plan_key]
        return api.ListRunningTasksResponse(running_tasks=[_running(t) for t in running], total_size=len(running))

    async def CancelTask(self, request, context):
        if current_caller().org_id != self._settings.org_id:
            raise PermissionDenied("only this organization's own services may cancel its tasks")
        canceled = await self._worker.cancel(request.compute_task_key) if self._worker else False
        return api.CancelTaskResponse(canceled=canceled)
