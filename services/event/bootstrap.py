"""Composition root of the event service: settings → engine and migrations → servicer → server."""

from __future__ import annotations

from pathlib import Path

from tessera.event.v1 import event_service_pb2 as api
from tessera.event.v1 import event_service_pb2_grpc as api_grpc

from services.event.settings import EventSettings
from services.event.tables import SCHEMA
from services.kit import app
from services.kit.server import GrpcServer

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE = api.DESCRIPTOR.services_by_name["EventService"].full_name


class EventService(api_grpc.EventServiceServicer):
    """The organization's feed. Following the ledger arrives with the execution issue; until then
    every RPC answers UNIMPLEMENTED (after authentication)."""


async def build(settings: EventSettings) -> GrpcServer:
    """Everything the event service needs, wired together; the caller starts the returned server."""
    base = await app.foundation(settings, SCHEMA, MIGRATIONS)
    base.server.add(api_grpc.add_EventServiceServicer_to_server, EventService(), SERVICE)
    return base.server
