"""Smoke test of a two-organization network: health, reflection, and credentials required."""

from __future__ import annotations

import json
import urllib.request

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tessera.asset.v1 import asset_service_pb2 as asset_api
from tessera.asset.v1 import asset_service_pb2_grpc as asset_grpc
from tessera.compute.v1 import compute_service_pb2 as compute_api
from tessera.compute.v1 import compute_service_pb2_grpc as compute_grpc
from tessera.event.v1 import event_service_pb2 as event_api
from tessera.event.v1 import event_service_pb2_grpc as event_grpc
from tessera.storage.v1 import storage_service_pb2 as storage_api
from tessera.storage.v1 import storage_service_pb2_grpc as storage_grpc

from services.kit.client import sync_channel

EXPECTED_SERVICE = {
    "asset": "tessera.asset.v1.AssetService",
    "storage": "tessera.storage.v1.StorageService",
    "compute": "tessera.compute.v1.ComputeService",
    "event": "tessera.event.v1.EventService",
}

# One cheap call per service, made without credentials.
ANONYMOUS_CALLS = {
    "asset": lambda ch: asset_grpc.AssetServiceStub(ch).ListOrganizations(asset_api.ListOrganizationsRequest()),
    "storage": lambda ch: storage_grpc.StorageServiceStub(ch).StatFile(storage_api.StatFileRequest()),
    "compute": lambda ch: compute_grpc.ComputeServiceStub(ch).GetStatus(compute_api.GetStatusRequest()),
    "event": lambda ch: event_grpc.EventServiceStub(ch).ListEvents(event_api.ListEventsRequest()),
}


def _grpc_services(network):
    return [s for s in network.services if not s.http]


def test_every_grpc_service_reports_serving(network):
    assert len(_grpc_services(network)) == 1 + 3 * 2
    for spec in _grpc_services(network):
        with grpc.insecure_channel(spec.addr) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for name in ("", EXPECTED_SERVICE[spec.name]):
                reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, (spec.label, name)


def test_every_service_lists_and_describes_itself_by_reflection(network):
    for spec in _grpc_services(network):
        with grpc.insecure_channel(spec.addr) as channel:
            database = ProtoReflectionDescriptorDatabase(channel)
            services = set(database.get_services())
            assert EXPECTED_SERVICE[spec.name] in services, spec.label
            assert "grpc.health.v1.Health" in services
            descriptor = database.FindFileContainingSymbol(EXPECTED_SERVICE[spec.name])
            assert descriptor.service, spec.label


@pytest.mark.parametrize("service", ["asset", "storage", "compute", "event"])
def test_calls_without_credentials_are_refused_with_unauthenticated(network, service):
    for spec in (s for s in _grpc_services(network) if s.name == service):
        with grpc.insecure_channel(spec.addr) as channel, pytest.raises(grpc.RpcError) as info:
            ANONYMOUS_CALLS[service](channel)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED, spec.label


def test_gateways_report_their_upstreams_healthy(network):
    for org in network.organizations:
        with urllib.request.urlopen(f"{org.gateway}/healthz", timeout=5) as response:
            body = json.loads(response.read())
        assert response.status == 200
        assert body["upstreams"] == {name: "SERVING" for name in ("asset", "storage", "compute", "event")}


def test_each_organization_registers_itself_with_its_own_credentials(network):
    """The event service of each organization registers it in the ledger at start (as Substra's backends do),
    and the network reports itself started only once every organization is listed."""
    asset_addr = network.services[0].addr
    first = network.organizations[0]
    stub = asset_grpc.AssetServiceStub(sync_channel(asset_addr, network.org_credentials(first.id)))
    expected = {(first.id, True, first.gateway), (network.organizations[1].id, False, network.organizations[1].gateway)}
    listed = stub.ListOrganizations(asset_api.ListOrganizationsRequest()).organizations
    assert {(o.id, o.is_current, o.address) for o in listed} == expected


def test_the_web_frontend_can_log_in_from_its_development_server(network):
    org = network.organizations[0]
    origin = "http://localhost:3000"
    preflight = httpx.options(
        f"{org.gateway}/me/login/",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.headers.get("access-control-allow-origin") == origin
    assert preflight.headers.get("access-control-allow-credentials") == "true"
    login = httpx.post(
        f"{org.gateway}/me/login/",
        json={"username": org.username, "password": org.password},
        headers={"Origin": origin},
        timeout=10,
    )
    assert login.status_code == 200, login.text
    assert {"header.payload", "signature"} <= set(login.cookies.keys())
