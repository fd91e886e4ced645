"""Composition root of storage: settings → engine and migrations → servicer → server."""

from __future__ import annotations

from pathlib import Path

from tessera.storage.v1 import storage_service_pb2, storage_service_pb2_grpc

from services.kit import app
from services.kit.server import GrpcServer
from services.storage.settings import StorageSettings
from services.storage.tables import SCHEMA

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = storage_service_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name


class StorageService(storage_service_pb2_grpc.StorageServiceServicer):
    """Files of one organization. The streaming RPCs arrive with the storage issue; until then
    every RPC answers UNIMPLEMENTED (after authentication)."""


async def build(settings: StorageSettings) -> GrpcServer:
    """Everything storage needs, wired together; the caller starts the returned server."""
    Path(settings.storage_root).mkdir(parents=True, exist_ok=True)
    base = await app.foundation(settings, SCHEMA, MIGRATIONS)
    base.server.add(storage_service_pb2_grpc.add_StorageServiceServicer_to_server, StorageService(), SERVICE)
    return base.server
