"""Composition root of compute: settings → engine and migrations → NATS work stream → storage
clients and executor → worker → servicer → server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tessera.compute.v1 import compute_service_pb2 as api
from tessera.compute.v1 import compute_service_pb2_grpc as api_grpc

from services.compute import isolation
from services.compute.executor import LocalExecutor
from services.compute.files import Files
from services.compute.server import ComputeService
from services.compute.settings import ComputeSettings
from services.compute.tables import SCHEMA
from services.compute.worker import Worker
from services.kit import app, subjects
from services.kit.server import GrpcServer, credentials_from

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = api.DESCRIPTOR.services_by_name["ComputeService"].full_name
STREAMS = [subjects.WORK]


async def build(settings: ComputeSettings) -> GrpcServer:
    """Everything compute needs, wired together; the caller starts the returned server."""
    work_dir = Path(settings.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if settings.executor != "local":
        raise ValueError(f"TESSERA_EXECUTOR={settings.executor!r}: only the local executor is available yet")
    base = await app.foundation(settings, SCHEMA, MIGRATIONS, STREAMS)
    worker = None
    if settings.worker_enabled and settings.asset_addr:
        limits = settings.limits()
        uids = isolation.UidPool(settings.sandbox_uid_base, settings.sandbox_uid_count)
        await asyncio.to_thread(isolation.check)  # no jail, no work: refuse to start rather than run bare
        executor = LocalExecutor(
            work_dir, limits, uids, idle_seconds=settings.runner_idle_seconds, max_idle=2 * settings.slots
        )
        files = Files(settings.org_id, settings.peer_addresses(), work_dir / "cache")
        jails = isolation.OneShot(limits, uids)
        worker = Worker(settings, credentials_from(settings), files, executor, base.js, jails)
        await worker.start()
        base.server.on_stop(worker.stop)
    base.server.add(api_grpc.add_ComputeServiceServicer_to_server, ComputeService(settings, worker), SERVICE)
    return base.server
