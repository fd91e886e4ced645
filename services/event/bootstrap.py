"""Composition root of the event service: settings → engine and migrations → ledger, compute and
NATS clients → one follower per channel → servicer → server."""

from __future__ import annotations

from pathlib import Path

from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.compute.v1 import compute_service_pb2_grpc as compute_grpc
from tessera.event.v1 import event_service_pb2 as api
from tessera.event.v1 import event_service_pb2_grpc as api_grpc
from tessera.storage.v1 import storage_service_pb2_grpc as storage_grpc

from services.event.dispatcher import Dispatcher
from services.event.follower import Follower
from services.event.server import EventService
from services.event.settings import EventSettings
from services.event.tables import SCHEMA
from services.kit import app, client, subjects
from services.kit.db import UnitOfWork
from services.kit.hub import Hub
from services.kit.identity import Channels
from services.kit.server import GrpcServer, credentials_from

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = api.DESCRIPTOR.services_by_name["EventService"].full_name


async def build(settings: EventSettings) -> GrpcServer:
    """Everything the event service needs, wired together; the caller starts the returned server."""
    base = await app.foundation(settings, SCHEMA, MIGRATIONS, [subjects.WORK])  # it publishes work
    uow = UnitOfWork(base.engine)
    hub = Hub()
    base.server.add(api_grpc.add_EventServiceServicer_to_server, EventService(uow, hub), SERVICE)
    if settings.follow_enabled and settings.asset_addr:
        # Empty channel configuration: one channel, whichever the ledger gives the organization.
        for channel in Channels.parse(settings.channels).of(settings.org_id) or [""]:
            creds = credentials_from(settings, channel=channel)
            ledger = asset_grpc.AssetServiceStub(client.channel(settings.asset_addr, creds))
            compute = (
                compute_grpc.ComputeServiceStub(client.channel(settings.compute_addr, creds))
                if settings.compute_addr
                else None
            )
            storage = (
                storage_grpc.StorageServiceStub(client.channel(settings.storage_addr, creds))
                if settings.storage_addr
                else None
            )
            dispatcher = Dispatcher(settings.org_id, channel, ledger, compute, base.js, storage)
            follower = Follower(
                uow,
                channel or "mychannel",
                ledger,
                dispatcher,
                hub=hub,
                address=settings.public_url,
                retry_seconds=settings.retry_seconds,
            )
            follower.start()
            base.server.on_stop(follower.stop)
    return base.server
