"""An in-process ledger and one organization's event service following it, on the session's
PostgreSQL and NATS. Organization ids are fresh, so the work subjects (``work.<org>.*``) are this
package's alone on the shared WORK stream."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.event.v1 import event_service_pb2 as api
from tessera.event.v1 import event_service_pb2_grpc as api_grpc

from services.asset.bootstrap import build as build_ledger
from services.asset.settings import AssetSettings
from services.event.bootstrap import build as build_events
from services.event.settings import EventSettings
from services.kit import telemetry
from services.kit.client import sync_channel
from services.kit.db import ensure_database
from services.kit.identity import OrgCredentials
from tests.support import ServerThread
from tools.devnet.credentials import new_secret, write_org_credentials

SPANS = InMemorySpanExporter()


@dataclass
class World:
    """The ledger and org1's event service; ``ledger(org, channel)`` and ``events(channel)`` are stubs."""

    org1: str
    org2: str
    channels: tuple[str, str]  # org1 and org2's channel, org1's own channel
    public_url: str
    secrets: dict[str, str]
    ledger_addr: str
    event_addr: str

    def ledger(self, org: str, channel: str) -> asset_grpc.AssetServiceStub:
        creds = OrgCredentials(org, self.secrets[org], channel=channel)
        return asset_grpc.AssetServiceStub(sync_channel(self.ledger_addr, creds))

    def events(self, channel: str) -> api_grpc.EventServiceStub:
        creds = OrgCredentials(self.org1, self.secrets[self.org1], channel=channel)
        return api_grpc.EventServiceStub(sync_channel(self.event_addr, creds))

    def caught_up(self, channel: str, timeout: float = 15.0) -> None:
        """Wait until org1's feed holds every event the ledger has in ``channel``."""
        ledger = self.ledger(self.org1, channel)
        head = ledger.QueryEvents(asset_api.QueryEventsRequest(page_size=1, descending=True)).events[0].position
        feed = self.events(channel)
        deadline = time.monotonic() + timeout
        while feed.ListEvents(api.ListEventsRequest(page_size=1, page=1)).total_size < head:
            assert time.monotonic() < deadline, f"the feed of {channel} did not catch up with position {head}"
            time.sleep(0.05)


@pytest.fixture(scope="package")
def tracing() -> InMemorySpanExporter:
    """Spans are recorded (so trace context is propagated) and kept in :data:`SPANS`."""
    telemetry.configure_tracing("tests", [SPANS])
    return SPANS


@pytest.fixture(scope="package")
def world(postgres, nats_server, tmp_path_factory, tracing) -> World:
    suffix = uuid.uuid4().hex[:8]
    org1, org2 = f"EvOrg1{suffix}", f"EvOrg2{suffix}"
    shared, own = f"shared{suffix}", f"own{suffix}"
    secrets = {org1: new_secret(), org2: new_secret()}
    credentials = write_org_credentials(tmp_path_factory.mktemp("event"), secrets)
    channels = f"{shared}={org1},{org2};{own}={org1}"
    common = {"channels": channels, "nats_url": nats_server.url}
    ledger_url, event_url = postgres.url(f"ev_ledger_{suffix}"), postgres.url(f"ev_event_{suffix}")
    ensure_database(ledger_url)
    ensure_database(event_url)
    ledger_settings = AssetSettings(
        grpc_addr="127.0.0.1:0", database_url=ledger_url, **common, **credentials.settings()
    )
    with ServerThread(lambda: build_ledger(ledger_settings)) as ledger:
        public_url = f"http://{org1.lower()}.test"
        event_settings = EventSettings(
            grpc_addr="127.0.0.1:0",
            database_url=event_url,
            org_id=org1,
            asset_addr=ledger.addr,
            public_url=public_url,
            retry_seconds=0.1,
            **common,
            **credentials.settings(org1),
        )
        with ServerThread(lambda: build_events(event_settings)) as events:
            world = World(org1, org2, (shared, own), public_url, secrets, ledger.addr, events.addr)
            world.ledger(org2, shared).RegisterOrganization(asset_api.RegisterOrganizationRequest(address="http://2"))
            yield world
