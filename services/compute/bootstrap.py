"""Composition root of compute: settings → engine and migrations → NATS work stream → servicer → server."""

from __future__ import annotations

from pathlib import Path

from tessera.compute.v1 import compute_service_pb2 as api
from tessera.compute.v1 import compute_service_pb2_grpc as api_grpc

from services.compute.settings import ComputeSettings
from services.compute.tables import SCHEMA
from services.kit import app, subjects
from services.kit.server import GrpcServer

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = api.DESCRIPTOR.services_by_name["ComputeService"].full_name
STREAMS = [app.StreamSpec(subjects.WORK_STREAM, ("work.>",), work_queue=True)]


class ComputeService(api_grpc.ComputeServiceServicer):
    """Status of this organization's executor. Building and running arrive with the execution issue."""

    def __init__(self, settings: ComputeSettings) -> None:
        self._settings = settings

    async def GetStatus(self, request: api.GetStatusRequest, context) -> api.GetStatusResponse:
        return api.GetStatusResponse(slots_total=self._settings.slots, slots_busy=0, executor=self._settings.executor)


async def build(settings: ComputeSettings) -> GrpcServer:
    """Everything compute needs, wired together; the caller starts the returned server."""
    Path(settings.work_dir).mkdir(parents=True, exist_ok=True)
    base = await app.foundation(settings, SCHEMA, MIGRATIONS, STREAMS)
    base.server.add(api_grpc.add_ComputeServiceServicer_to_server, ComputeService(settings), SERVICE)
    return base.server
