"""Composition root of the event service: settings → engine and migrations → store → servicer; then,
per channel of the organization, ledger, compute and storage clients → dispatcher → follower → server."""

from __future__ import annotations

from pathlib import Path

import grpc
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.compute.v1 import compute_service_pb2_grpc as compute_grpc
from tessera.event.v1 import event_service_pb2 as api
from tessera.event.v1 import event_service_pb2_grpc as api_grpc
from tessera.storage.v1 import storage_service_pb2_grpc as storage_grpc

from services.event.dispatcher import Dispatcher
from services.event.domain.dispatch import DispatchRules
from services.event.follower import Follower
from services.event.server import EventService
from services.event.settings import EventSettings
from services.event.store.sql import SqlStore
from services.event.store.tables import SCHEMA
from services.kit import app, client, subjects
from services.kit.db import UnitOfWork
from services.kit.hub import Hub
from services.kit.identity import DEFAULT_CHANNEL
from services.kit.server import GrpcServer, credentials_from

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = api.DESCRIPTOR.services_by_name["EventService"].full_name
STREAMS = [subjects.WORK]  # it publishes work


async def build(settings: EventSettings) -> GrpcServer:
    """Everything the event service needs, wired together; the caller starts the returned server."""
    base = await app.foundation(settings, SCHEMA, MIGRATIONS, STREAMS, own_organization_only=True)
    uow = UnitOfWork(base.engine, repositories=SqlStore)
    hub = Hub()
    base.server.add(api_grpc.add_EventServiceServicer_to_server, EventService(uow, hub), SERVICE)
    if not (settings.follow_enabled and settings.asset_addr):
        return base.server

    def open_channel(addr: str, channel: str) -> grpc.aio.Channel:
        opened = client.channel(addr, credentials_from(settings, channel=channel))
        base.server.on_stop(lambda: opened.close())  # after the followers stopped (callbacks run in reverse)
        return opened

    for channel in settings.own_channels():  # "": the one open channel, whichever the ledger gives
        ledger = asset_grpc.AssetServiceStub(open_channel(settings.asset_addr, channel))
        compute = (
            compute_grpc.ComputeServiceStub(open_channel(settings.compute_addr, channel))
            if settings.compute_addr
            else None
        )
        storage = (
            storage_grpc.StorageServiceStub(open_channel(settings.storage_addr, channel))
            if settings.storage_addr
            else None
        )
        dispatcher = Dispatcher(DispatchRules(settings.org_id, channel), ledger, compute, base.js, storage)
        follower = Follower(
            uow,
            channel or DEFAULT_CHANNEL,
            ledger,
            dispatcher,
            hub=hub,
            address=settings.public_url,
            retry_seconds=settings.retry_seconds,
            hold_seconds=settings.hold_seconds,
        )
        follower.start()
        base.server.on_stop(follower.stop)
    return base.server
