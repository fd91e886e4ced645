"""Composition root of the ledger: settings → engine and migrations → NATS and the relay →
servicer → server."""

from __future__ import annotations

from pathlib import Path

from tessera.asset.v1 import asset_service_pb2, asset_service_pb2_grpc

from services.asset.events import Hub, RecentEvents, Relay
from services.asset.server import AssetService
from services.asset.settings import AssetSettings
from services.asset.store.repositories import Repositories
from services.asset.store.tables import SCHEMA
from services.kit import app, subjects
from services.kit.db import UnitOfWork
from services.kit.server import GrpcServer

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = asset_service_pb2.DESCRIPTOR.services_by_name["AssetService"].full_name
STREAMS = [subjects.LEDGER]


async def build(settings: AssetSettings) -> GrpcServer:
    """Everything the ledger needs, wired together; the caller starts the returned server."""
    base = await app.foundation(settings, SCHEMA, MIGRATIONS, STREAMS)
    # Writes run SERIALIZABLE on an engine (a pool) of their own; reads on another, each statement on its own
    # (autocommit: no BEGIN and COMMIT around a CanProcess's one query). The foundation's engine migrated.
    serializable = app.engine_of(settings, SCHEMA, base.server, serializable=True)
    writes = UnitOfWork(serializable, repositories=Repositories, serializable=True, retries=settings.tx_retries)
    reads = UnitOfWork(app.engine_of(settings, SCHEMA, base.server, autocommit=True), repositories=Repositories)
    base.engine.dispose()  # it only migrated: its pooled connection is not kept open
    hub = Hub()
    recent = RecentEvents()
    if base.js is not None and settings.relay_enabled:
        relay = Relay(reads, base.js, hub, recent)
        relay.start()
        base.server.on_stop(relay.stop)
    base.server.add(
        asset_service_pb2_grpc.add_AssetServiceServicer_to_server, AssetService(writes, reads, hub, recent), SERVICE
    )
    return base.server
