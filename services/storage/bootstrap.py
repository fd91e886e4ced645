"""Composition root of storage: settings → blob store → engine and migrations → ledger client →
files and permissions → servicer → server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tessera.asset.v1 import asset_service_pb2_grpc

from services.kit import app, client
from services.kit.archives import Limits
from services.kit.db import UnitOfWork
from services.kit.server import GrpcServer, credentials_from
from services.kit.settings import SettingsError
from services.storage.domain.permissions import Permissions
from services.storage.files import Files
from services.storage.ledger import GrpcLedger
from services.storage.server import SERVICE_NAME, StorageService, add_to_server
from services.storage.settings import StorageSettings
from services.storage.store.blobs import FilesystemStore
from services.storage.store.sql import SqlFileRecords
from services.storage.store.tables import SCHEMA

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("tessera.storage")


async def build(settings: StorageSettings) -> GrpcServer:
    """Everything storage needs, wired together; the caller starts the returned server."""
    if not settings.org_id:
        raise SettingsError("TESSERA_ORG_ID is required: storage holds one organization's files")
    blobs = await asyncio.to_thread(
        FilesystemStore, settings.storage_root, durable=settings.durable, direct=settings.direct_io
    )
    swept = await asyncio.to_thread(blobs.sweep_staging, settings.staging_max_age)
    if swept:
        log.info("removed %d staged uploads left by an earlier process", swept)
    # Storage publishes nothing (no NATS) and migrates in a child process (Alembic never resident): the data
    # path keeps its memory for transfers (docs/benchmarks.md).
    base = await app.foundation(settings, SCHEMA, MIGRATIONS, use_nats=False, migrate_in_child=True)
    ledger = None
    if settings.asset_addr:
        channel = client.channel(settings.asset_addr, credentials_from(settings))
        ledger = GrpcLedger(asset_service_pb2_grpc.AssetServiceStub(channel), timeout=settings.ledger_timeout)
        base.server.on_stop(channel.close)
    files = Files(
        blobs,
        UnitOfWork(base.engine, repositories=SqlFileRecords),
        reads=UnitOfWork(app.engine_of(settings, SCHEMA, base.server, autocommit=True), repositories=SqlFileRecords),
        org_id=settings.org_id,
        max_file_bytes=settings.max_file_bytes,
        limits=Limits(max_members=settings.max_archive_members, max_total_bytes=settings.max_unpacked_bytes),
    )
    permissions = Permissions(ledger, settings.org_id, export_channels=settings.model_export_channels)
    servicer = StorageService(files, permissions, chunk_bytes=settings.chunk_bytes, public_url=settings.public_url)
    base.server.add(add_to_server, servicer, SERVICE_NAME)
    return base.server
