"""The service kit end to end over loopback gRPC, with the real ledger servicer on PostgreSQL.

Covers identity from credentials, error translation (codes, ErrorInfo, field violations, no
leak on INTERNAL), tracing across the hop, structured logs carrying the trace id, and health.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from tessera.asset.v1 import asset_service_pb2 as api
from tessera.asset.v1 import asset_service_pb2_grpc as api_grpc

from services.asset.bootstrap import build
from services.asset.settings import AssetSettings
from services.kit import logs, telemetry
from services.kit.client import sync_channel
from services.kit.errors import FieldViolation
from services.kit.identity import OrgCredentials
from services.kit.status import status_details
from tests.support import ServerThread
from tools.devnet.credentials import write_org_credentials

SPANS = InMemorySpanExporter()
SECRETS = {"org1": "secret-1", "org2": "secret-2", "outsider": "secret-3"}


@pytest.fixture(scope="module")
def ledger(postgres, nats_server, tmp_path_factory):
    from services.kit.db import ensure_database

    telemetry.configure_tracing("tests", [SPANS])
    credentials = write_org_credentials(tmp_path_factory.mktemp("secrets"), SECRETS)
    url = postgres.url("kit_server")
    ensure_database(url)
    settings = AssetSettings(
        grpc_addr="127.0.0.1:0",
        database_url=url,
        nats_url=nats_server.url,
        **credentials.settings(),
        channels="mychannel=org1,org2;lonely=outsider",
    )
    with ServerThread(lambda: build(settings)) as server:
        yield server


def _stub(ledger, org="org1", secret=None):
    creds = OrgCredentials(org_id=org, secret=secret or SECRETS[org]) if org else None
    return api_grpc.AssetServiceStub(sync_channel(ledger.addr, creds))


def test_health_reports_serving_without_credentials(ledger):
    with grpc.insecure_channel(ledger.addr) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tessera.asset.v1.AssetService"):
            assert health.Check(health_pb2.HealthCheckRequest(service=service)).status == 1  # SERVING


def test_calls_without_or_with_wrong_credentials_are_unauthenticated(ledger):
    for stub in (_stub(ledger, org=None), _stub(ledger, "org1", "not-the-secret")):
        with pytest.raises(grpc.RpcError) as info:
            stub.ListOrganizations(api.ListOrganizationsRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert status_details(info.value).reason == "UNAUTHENTICATED"


def test_identity_comes_from_the_credential_and_channels_isolate(ledger):
    org1 = _stub(ledger, "org1").RegisterOrganization(api.RegisterOrganizationRequest(address="http://org1.test"))
    assert org1.organization.id == "org1" and org1.organization.is_current
    _stub(ledger, "org2").RegisterOrganization(api.RegisterOrganizationRequest())
    _stub(ledger, "outsider").RegisterOrganization(api.RegisterOrganizationRequest())

    seen_by_org2 = _stub(ledger, "org2").ListOrganizations(api.ListOrganizationsRequest())
    assert [(o.id, o.is_current) for o in seen_by_org2.organizations] == [("org1", False), ("org2", True)]
    assert seen_by_org2.total_size == 2
    seen_by_outsider = _stub(ledger, "outsider").ListOrganizations(api.ListOrganizationsRequest())
    assert [o.id for o in seen_by_outsider.organizations] == ["outsider"]


def test_domain_errors_become_canonical_status_with_details(ledger):
    with pytest.raises(grpc.RpcError) as info:
        _stub(ledger, "org2").RegisterOrganization(api.RegisterOrganizationRequest(address="not a url"))
    details = status_details(info.value)
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "INVALID_ARGUMENT"
    assert details.violations == [FieldViolation("address", "must be an absolute http(s) URL")]

    stub = _stub(ledger, "org1")
    with contextlib.suppress(grpc.RpcError):  # registered by an earlier test or not
        stub.RegisterOrganization(api.RegisterOrganizationRequest())
    with pytest.raises(grpc.RpcError) as info:
        stub.RegisterOrganization(api.RegisterOrganizationRequest())
    details = status_details(info.value)
    assert details.code == grpc.StatusCode.ALREADY_EXISTS
    assert details.metadata == {"keys": "org1"}


def test_unknown_keys_are_not_found_and_malformed_keys_invalid(ledger):
    with pytest.raises(grpc.RpcError) as info:
        _stub(ledger, "org1").GetTask(api.GetTaskRequest(key="00000000-0000-0000-0000-000000000000"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as info:
        _stub(ledger, "org1").GetTask(api.GetTaskRequest(key="not-a-key"))
    assert status_details(info.value).violations == [FieldViolation("key", "must be a UUID")]


def test_the_trace_continues_across_the_call_and_reaches_the_logs(ledger):
    stream = io.StringIO()
    logs.configure("tests", "INFO", stream)
    SPANS.clear()
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("client-side") as parent:
        _stub(ledger, "org2").ListOrganizations(api.ListOrganizationsRequest())
        trace_id = parent.get_span_context().trace_id
    server_spans = [s for s in SPANS.get_finished_spans() if s.name.endswith("/ListOrganizations")]
    assert server_spans, "the server made no span"
    assert server_spans[0].context.trace_id == trace_id
    assert server_spans[0].attributes["tessera.org"] == "org2"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    rpc_lines = [line for line in lines if line.get("rpc", "").endswith("/ListOrganizations")]
    assert rpc_lines and rpc_lines[0]["trace_id"] == format(trace_id, "032x")
    assert rpc_lines[0]["code"] == "OK" and rpc_lines[0]["org"] == "org2"
    logging.getLogger().handlers.clear()


def test_aio_channels_present_the_credential_on_streaming_calls_too(ledger):
    """grpc.aio files one interceptor under one call kind only: a server stream must carry the credential."""
    import asyncio

    from services.kit.client import channel

    async def first_event():
        async with channel(ledger.addr, OrgCredentials(org_id="org1", secret=SECRETS["org1"])) as aio:
            stub = api_grpc.AssetServiceStub(aio)
            async for reply in stub.SubscribeEvents(api.SubscribeEventsRequest(after_position=0), timeout=10):
                return reply.event

    with contextlib.suppress(grpc.RpcError):  # at least one event exists, whichever test ran first
        _stub(ledger, "org1").RegisterOrganization(api.RegisterOrganizationRequest())
    event = asyncio.run(first_event())
    assert event.position == 1 and event.channel == "mychannel"
